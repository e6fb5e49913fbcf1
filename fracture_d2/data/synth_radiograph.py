"""Render radiograph-like synthetic images with fractures and their boxes.

Bones are drawn as densities (bright cortex around a dimmer medulla) over a soft-tissue
silhouette, summed like X-ray attenuation, then blurred and made noisy. A fracture is a thin,
jagged dark gap across a long bone, optionally with the distal fragment displaced. The box of a
fracture covers the gap where it crosses the bone plus a small margin, which is what an
annotator would draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BODY_PARTS = ("ELBOW", "FINGER", "FOREARM", "HAND", "HUMERUS", "SHOULDER", "WRIST")


@dataclass
class Bone:
    """A long bone as a capsule from ``p0`` to ``p1`` with outer ``width`` (pixels)."""

    p0: np.ndarray
    p1: np.ndarray
    width: float

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.p1 - self.p0))


def _bone(p0, p1, width) -> Bone:
    return Bone(np.asarray(p0, np.float64), np.asarray(p1, np.float64), float(width))


def _layout(part: str, w: int, h: int, rng: np.random.Generator):
    """Return (long bones, round bones as (centre, axes, angle)) for a body part, in pixels."""
    s = min(w, h)
    cx = w / 2 + rng.uniform(-0.08, 0.08) * w
    bones, blobs = [], []
    if part == "HUMERUS":
        bones.append(
            _bone(
                (cx, 0.05 * h),
                (cx + rng.uniform(-0.1, 0.1) * w, 0.95 * h),
                rng.uniform(0.13, 0.18) * s,
            )
        )
    elif part == "FOREARM":
        gap = rng.uniform(0.11, 0.15) * w
        for dx in (-gap / 2, gap / 2):
            bones.append(
                _bone((cx + dx, 0.04 * h), (cx + dx * 0.7, 0.96 * h), rng.uniform(0.07, 0.095) * s)
            )
    elif part == "FINGER":
        y, seg_w = 0.04 * h, rng.uniform(0.11, 0.15) * s
        for frac in (0.38, 0.3, 0.22):
            y1 = y + frac * h
            bones.append(_bone((cx, y), (cx, y1), seg_w))
            y, seg_w = y1 + 0.025 * h, seg_w * 0.9
    elif part in ("HAND", "WRIST"):
        n, base_y = 5, (0.6 if part == "HAND" else 0.35) * h
        for i in range(n):
            x = cx + (i - 2) * 0.13 * w
            top = base_y - rng.uniform(0.3, 0.4) * h
            bones.append(
                _bone((x, base_y), (x + (i - 2) * 0.03 * w, top), rng.uniform(0.06, 0.08) * s)
            )
        for _ in range(6):
            c = (cx + rng.uniform(-0.2, 0.2) * w, base_y + rng.uniform(0.05, 0.14) * h)
            blobs.append((c, (0.05 * s, 0.04 * s), rng.uniform(0, 180)))
        if part == "WRIST":
            for dx, wd in ((-0.12, 0.12), (0.14, 0.08)):
                bones.append(
                    _bone((cx + dx * w, 0.99 * h), (cx + dx * w, base_y + 0.2 * h), wd * s)
                )
    elif part == "ELBOW":
        jx, jy = cx, 0.5 * h + rng.uniform(-0.05, 0.05) * h
        bones.append(_bone((cx - 0.1 * w, 0.02 * h), (jx, jy - 0.04 * h), 0.16 * s))
        ang = rng.uniform(-0.5, 0.5)
        for dx in (-0.06, 0.06):
            end = (jx + dx * w + np.sin(ang) * 0.45 * h, jy + np.cos(ang) * 0.45 * h)
            bones.append(_bone((jx + dx * w, jy + 0.05 * h), end, 0.08 * s))
        blobs.append(((jx, jy), (0.11 * s, 0.06 * s), 0))
    elif part == "SHOULDER":
        hx = cx + 0.05 * w
        bones.append(_bone((hx, 0.35 * h), (hx + rng.uniform(-0.1, 0.1) * w, 0.98 * h), 0.15 * s))
        bones.append(_bone((0.05 * w, 0.12 * h), (0.7 * w, 0.2 * h), 0.07 * s))  # clavicle
        blobs.append(((hx, 0.3 * h), (0.14 * s, 0.14 * s), 0))  # humeral head
        blobs.append(((hx - 0.25 * w, 0.35 * h), (0.12 * s, 0.3 * s), 15))  # scapula
    else:
        raise ValueError(f"unknown body part {part!r}; expected one of {BODY_PARTS}")
    return bones, blobs


def _draw_capsule(canvas, bone: Bone, value: float, shrink: float = 0.0) -> None:
    thickness = max(1, int(round(bone.width - 2 * shrink)))
    p0 = tuple(int(round(v)) for v in bone.p0)
    p1 = tuple(int(round(v)) for v in bone.p1)
    cv2.line(canvas, p0, p1, float(value), thickness, cv2.LINE_8)


def _bone_layer(shape, bone: Bone, rng) -> np.ndarray:
    layer = np.zeros(shape, np.float32)
    cortex = max(2.0, bone.width * rng.uniform(0.15, 0.25))
    _draw_capsule(layer, bone, 1.0)
    inner = np.zeros(shape, np.float32)
    _draw_capsule(inner, bone, 1.0, shrink=cortex)
    return layer - inner * rng.uniform(0.35, 0.5)


def _fracture(layer: np.ndarray, bone: Bone, rng) -> tuple[np.ndarray, list[float]]:
    """Cut a jagged gap across ``bone`` in its own ``layer``; return new layer and its box."""
    axis = (bone.p1 - bone.p0) / bone.length
    normal = np.array([-axis[1], axis[0]])
    t = rng.uniform(0.25, 0.75)
    centre = bone.p0 + axis * t * bone.length
    tilt = rng.uniform(-0.6, 0.6)
    across = normal * np.cos(tilt) + axis * np.sin(tilt)
    half = bone.width * 0.75
    n = 5
    pts = [
        centre + across * half * (2 * i / (n - 1) - 1) + axis * rng.uniform(-2, 2) for i in range(n)
    ]
    gap = int(rng.integers(3, 7))
    cut = np.zeros(layer.shape, np.uint8)
    cv2.polylines(cut, [np.round(pts).astype(np.int32)], False, 1, gap)
    side = (np.indices(layer.shape)[::-1].transpose(1, 2, 0) - centre) @ axis > 0
    out = layer.copy()
    shift = 0.0
    if rng.random() < 0.5:  # displaced fracture: move the distal fragment sideways
        shift = rng.uniform(0.1, 0.3) * bone.width * rng.choice([-1, 1])
        dx, dy = normal * shift
        moved = cv2.warpAffine(layer, np.float32([[1, 0, dx], [0, 1, dy]]), layer.shape[::-1])
        out = np.where(side, moved, layer)
    bone_mask = (layer > 0) | (out > 0)
    out[cut.astype(bool)] = 0.0
    ys, xs = np.nonzero(cut.astype(bool) & bone_mask)
    pad = 4 + abs(shift)
    h, w = layer.shape
    box = [
        max(0.0, xs.min() - pad),
        max(0.0, ys.min() - pad),
        min(w - 1.0, xs.max() + pad),
        min(h - 1.0, ys.max() + pad),
    ]
    return out, [float(round(v)) for v in box]


def render_radiograph(
    part: str, size: tuple[int, int], n_fractures: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[list[float]]]:
    """Render one synthetic radiograph.

    Args:
        part: body part without the ``XR_`` prefix, one of :data:`BODY_PARTS`.
        size: (width, height) in pixels.
        n_fractures: number of fractures to cut (0 for a normal image), each in its own bone.
        rng: random generator; the image is a deterministic function of its state.

    Returns:
        (uint8 grayscale image of shape (height, width), list of [x0, y0, x1, y1] boxes).
    """
    w, h = size
    # Separate streams: the same seed gives the same anatomy and noise with or without fractures.
    rng, frac_rng, noise_rng = rng.spawn(3)
    bones, blobs = _layout(part, w, h, rng)
    tissue = np.zeros((h, w), np.float32)
    for b in bones:
        _draw_capsule(tissue, _bone(b.p0, b.p1, b.width * 2.6), 1.0)
    tissue = cv2.GaussianBlur(tissue, (0, 0), 0.04 * min(w, h))
    density = 0.35 * tissue
    for centre, axes, ang in blobs:
        blob = np.zeros((h, w), np.float32)
        c = tuple(int(round(v)) for v in centre)
        ax = tuple(max(1, int(round(v))) for v in axes)
        cv2.ellipse(blob, c, ax, ang, 0, 360, 0.8, -1)
        cv2.ellipse(blob, c, tuple(max(1, int(v * 0.75)) for v in ax), ang, 0, 360, 0.45, -1)
        density += blob
    # Fractures go into long bones; in a squat image, the most elongated bones stand in.
    long_bones = [i for i, b in enumerate(bones) if b.length > 3 * b.width]
    if len(long_bones) < n_fractures:
        long_bones = sorted(range(len(bones)), key=lambda i: -bones[i].length / bones[i].width)
        long_bones = long_bones[: max(n_fractures, 1)]
    broken = (
        set(
            frac_rng.choice(
                long_bones, size=min(n_fractures, len(long_bones)), replace=False
            ).tolist()
        )
        if n_fractures
        else set()
    )
    boxes = []
    for i, b in enumerate(bones):
        layer = _bone_layer((h, w), b, rng)
        if i in broken:
            layer, box = _fracture(layer, b, frac_rng)
            boxes.append(box)
        density += layer
    img = 1.0 - np.exp(-1.6 * density)  # attenuation: overlapping bones saturate, not clip
    img = cv2.GaussianBlur(img, (0, 0), noise_rng.uniform(0.6, 1.2))
    img = noise_rng.uniform(0.03, 0.1) + img * noise_rng.uniform(0.75, 0.95)
    img += noise_rng.normal(0, noise_rng.uniform(0.01, 0.03), img.shape)
    img = np.clip(img, 0, 1) ** noise_rng.uniform(0.8, 1.25)
    marker = noise_rng.choice(["L", "R"])
    text = np.zeros(img.shape, np.uint8)  # OpenCV >= 5 draws text on 8-bit images only
    cv2.putText(
        text,
        marker,
        (int(0.05 * w), int(0.95 * h)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.002 * min(w, h),
        255,
        2,
    )
    img[text > 0] = 0.95
    return np.round(img * 255).astype(np.uint8), boxes
