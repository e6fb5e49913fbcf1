"""Pictures of images: a panel per image (ground truth | predictions), grid sheets of many
images, and heatmap panels (detection | gradient CAM | RPN objectness). PNG, matplotlib Agg."""

from __future__ import annotations

import io
import math
from pathlib import Path

import cv2
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fracture_d2.utils_io import atomic_open

from .gradcam import CAM_NAMES
from .overlay import COLORS, LEGEND, DrawBox, blend_heatmap, display_scale, draw_boxes
from .selection import ImageResult


def save_figure(fig: Figure, path, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
    return Path(path)


def save_rgb(rgb: np.ndarray, path) -> Path:
    """Save an RGB uint8 image as PNG atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_open(path, "wb") as f:
        f.write(data.tobytes())
    return Path(path)


def gt_boxes(r: ImageResult, dashed: bool = False) -> list[DrawBox]:
    """Ground-truth boxes: found (blue) / missed (yellow) once matched, else plain."""
    out = []
    for g, hit in zip(
        r.gt, r.hit_by if len(r.hit_by) == len(r.gt) else [-1] * len(r.gt), strict=True
    ):
        kind = ("found" if hit >= 0 else "missed") if r.judged and r.boxes.size else "gt"
        out.append(DrawBox(tuple(g), kind, "" if dashed or kind != "missed" else "missed", dashed))
    return out


def pred_boxes(r: ImageResult) -> list[DrawBox]:
    """Predictions at or above the threshold, coloured TP/FP (or neutral if not judged)."""
    out = []
    for j, i in enumerate(r.shown):
        kind = ("tp" if r.is_tp[j] else "fp") if r.judged else "pred"
        out.append(DrawBox(tuple(r.boxes[i]), kind, f"{r.scores[i]:.2f}"))
    return out


def _legend(fig: Figure, kinds: set[str]) -> None:
    order = [k for k in ("tp", "fp", "pred", "found", "missed", "gt") if k in kinds]
    if order:
        handles = [
            Patch(facecolor="none", edgecolor=COLORS[k], lw=2, label=LEGEND[k]) for k in order
        ]
        fig.legend(handles=handles, loc="lower center", ncol=len(order), frameon=False, fontsize=9)


def describe(r: ImageResult) -> str:
    """One line of counts for titles."""
    if not r.has_gt:
        return f"image score {r.image_score:.2f} · {len(r.shown)} boxes shown"
    if not r.annotated:
        return f"image score {r.image_score:.2f} · no box annotations (label {r.image_label})"
    return (
        f"image score {r.image_score:.2f} · TP {r.n_tp} · FP {r.n_fp} · missed {r.n_missed}"
        f" of {len(r.gt)}"
    )


def render_panel(r: ImageResult, gray: np.ndarray, path, layout: str = "side", threshold=0.5):
    """One image: ground truth and predictions side by side (``side``) or in one (``overlay``)."""
    scale = display_scale(gray.shape, 560)
    preds = pred_boxes(r)
    right = draw_boxes(gray, gt_boxes(r, dashed=True) + preds, scale)
    images = [right]
    titles = [f"predictions ≥ {threshold:g}" + (" + ground truth (dashed)" if r.has_gt else "")]
    if layout == "side":
        left = draw_boxes(gray, gt_boxes(r), scale)
        images = [left, right]
        left_title = "ground truth" if r.judged else "image"
        titles = [left_title + ("" if r.annotated else " (no box annotations)"), titles[0]]
    h, w = right.shape[:2]
    fig = Figure(figsize=(max(len(images) * w / 100 + 0.2, 6.0), h / 100 + 1.2))
    for k, (img, title) in enumerate(zip(images, titles, strict=True)):
        ax = fig.add_axes([k / len(images), 0.08, 1 / len(images), 0.76])
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    where = f" · {r.body_part}" if r.body_part else ""
    fig.suptitle(f"image {r.image_id}{where}\n{_short(r.file_name)}\n{describe(r)}", fontsize=10)
    _legend(fig, {b.kind for b in gt_boxes(r) + preds})
    return save_figure(fig, path)


def _short(file_name: str, parts: int = 4) -> str:
    return "/".join(Path(file_name).parts[-parts:])


def render_grid(items: list[tuple[ImageResult, np.ndarray]], path, title: str, cols: int = 6):
    """A sheet of thumbnails with coloured boxes, each titled with id and counts."""
    cols = max(1, min(cols, len(items)))
    rows = max(1, math.ceil(len(items) / cols))
    fig = Figure(figsize=(cols * 2.4, rows * 2.7 + 1.0))
    kinds = set()
    for k, (r, gray) in enumerate(items):
        boxes = gt_boxes(r, dashed=True) + [DrawBox(b.box, b.kind) for b in pred_boxes(r)]
        kinds |= {b.kind for b in boxes}
        thumb = draw_boxes(gray, boxes, display_scale(gray.shape, 240))
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(thumb)
        ax.axis("off")
        counts = f"TP{r.n_tp} FP{r.n_fp} M{r.n_missed}" if r.judged else "not judged"
        ax.set_title(f"{r.image_id} · {r.image_score:.2f} · {counts}", fontsize=7)
    fig.suptitle(title, fontsize=11)
    height = rows * 2.7 + 1.0  # inches: room for the title above and the legend below
    fig.subplots_adjust(
        left=0.01, right=0.99, top=1 - 0.75 / height, bottom=0.45 / height, hspace=0.25, wspace=0.05
    )
    _legend(fig, kinds)
    return save_figure(fig, path)


def render_heatmap(r: ImageResult, gray: np.ndarray, expl, path, status: str = "pred"):
    """Detection | CAM of the explained box | RPN objectness, with colour bars."""
    scale = display_scale(gray.shape, 420)
    gts = gt_boxes(r, dashed=True) if r.has_gt else []
    target = [] if expl.box_index >= len(expl.boxes) else [expl.boxes[expl.box_index]]
    label = f"{expl.scores[expl.box_index]:.2f}" if target else ""
    box = [DrawBox(tuple(b), status, label) for b in target]
    others = [
        DrawBox(tuple(b), "pred", "", True) for i, b in enumerate(expl.boxes) if i != expl.box_index
    ]
    views = [
        ("detections (explained box solid)", draw_boxes(gray, gts + others + box, scale), None),
        (
            f"{CAM_NAMES[expl.method]} on {expl.layer}",
            draw_boxes(blend_heatmap(gray, expl.cam), box, scale),
            "relative",
        ),
        (
            "RPN objectness (max over anchors, levels)",
            draw_boxes(blend_heatmap(gray, expl.objectness), box, scale),
            "probability",
        ),
    ]
    h, w = views[0][1].shape[:2]
    fig = Figure(figsize=(3 * w / 100 + 1.8, h / 100 + 0.8), layout="constrained")
    for ax, (title, img, bar_label) in zip(fig.subplots(1, 3), views, strict=True):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        if bar_label is not None:
            bar = fig.colorbar(
                ScalarMappable(Normalize(0, 1), cmap="jet"), ax=ax, fraction=0.04, pad=0.02
            )
            bar.set_label(bar_label, fontsize=7)
            bar.ax.tick_params(labelsize=6)
    what = {"tp": "true positive", "fp": "false positive"}.get(status, "detection")
    fig.suptitle(
        f"image {r.image_id} · {r.body_part or _short(r.file_name)} · explained: {what} "
        f"{label} · {len(expl.boxes)} detections",
        fontsize=10,
    )
    return save_figure(fig, path)
