"""Draw boxes, labels and heatmaps on radiographs (Detectron2's Visualizer underneath).

One colour code everywhere (Okabe-Ito palette, readable with colour-vision deficiency and on
gray): true positive green, false positive vermillion, missed fracture yellow, a ground-truth
box that was found sky blue (dashed), a prediction without ground truth to judge it orange.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from detectron2.utils.visualizer import Visualizer
from matplotlib import colormaps

COLORS = {
    "tp": "#009E73",  # prediction that hits a fracture
    "fp": "#D55E00",  # prediction that hits nothing (or a fracture already hit)
    "missed": "#F0E442",  # fracture no prediction hit
    "found": "#56B4E9",  # fracture that was hit (drawn dashed under the prediction)
    "pred": "#E69F00",  # prediction on an image without box annotations to judge it
    "gt": "#56B4E9",  # ground truth when there are no predictions
}
LEGEND = {
    "tp": "true positive",
    "fp": "false positive",
    "missed": "missed fracture",
    "found": "fracture (found)",
    "pred": "prediction (not judged)",
    "gt": "fracture (ground truth)",
}


@dataclass
class DrawBox:
    """One box to draw: xyxy pixels, a :data:`COLORS` key, an optional label, dashed or not."""

    box: tuple
    kind: str
    label: str = ""
    dashed: bool = False


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """A 2-D uint8 radiograph as an HxWx3 RGB image."""
    return np.repeat(gray[:, :, None], 3, axis=2)


def display_scale(shape, target: int = 640) -> float:
    """Scale that brings an image's longer side to about ``target`` pixels (labels stay legible
    on small images, big radiographs stay a reasonable file size)."""
    return float(target) / max(shape[:2])


def draw_boxes(image: np.ndarray, boxes: list[DrawBox], scale: float = 1.0, header: str = ""):
    """Draw boxes with labels on an image.

    Args:
        image: 2-D uint8 gray or HxWx3 RGB image.
        boxes: what to draw, in original pixel coordinates; drawn in the given order.
        scale: output size relative to the input.
        header: optional text in the top-left corner (e.g. the image score).

    Returns:
        HxWx3 uint8 RGB image of the input size times ``scale``.
    """
    rgb = gray_to_rgb(image) if image.ndim == 2 else image
    vis = Visualizer(rgb, scale=scale)
    h, w = rgb.shape[:2]
    for b in boxes:
        x0, y0, x1, y1 = (float(v) for v in b.box)
        color = COLORS[b.kind]
        vis.draw_box(
            (x0, y0, x1, y1), alpha=0.95, edge_color=color, line_style="--" if b.dashed else "-"
        )
        if b.label:
            # Label above the box, or inside its bottom edge when the box touches the top.
            # The font size is in points at 100 dpi: about 1.6x that in image pixels with padding.
            lift = 1.6 * vis._default_font_size
            y = y0 - lift if y0 > lift else y1
            vis.draw_text(
                b.label, (min(x0, w - 1), min(y, h - 1)), color=color, horizontal_alignment="left"
            )
    if header:
        vis.draw_text(header, (2, 2), color="white", horizontal_alignment="left")
    return vis.output.get_image()


def blend_heatmap(
    gray: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = "jet", vmax: float = 1.0
) -> np.ndarray:
    """Blend a heatmap (HxW, 0..vmax) over a gray radiograph; returns HxWx3 uint8 RGB."""
    heat = np.clip(np.asarray(heat, np.float32) / max(vmax, 1e-12), 0, 1)
    if heat.shape != gray.shape:
        heat = cv2.resize(heat, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
    colored = colormaps[cmap](heat)[:, :, :3] * 255.0
    out = (1 - alpha) * gray_to_rgb(gray).astype(np.float32) + alpha * colored
    return np.clip(out, 0, 255).astype(np.uint8)
