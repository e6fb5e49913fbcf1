"""Boxes kept for a fraction of a training set's positive images, the rest labelled by image only.

MURA comes with image labels and no boxes; a researcher boxes a few hundred of its abnormal
images. To study how a detector learns from few boxes and many image labels on data where all
boxes are known (the synthetic MURA layout, FracAtlas), :func:`keep_box_fraction` hides the boxes
of all but a seeded fraction of the positives: those become image-label-only positives
(``"annotated": false``, no boxes), exactly as MURA's unboxed abnormal images are. The hidden
boxes are returned apart, so that pseudo boxes and models can be scored against them.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .errors import DataError


def check_fraction(fraction: float, source: str = "--box-fraction") -> float:
    """``fraction`` if it lies in (0, 1], else a :class:`DataError` naming ``source``."""
    if not 0.0 < fraction <= 1.0:
        raise DataError(source, f"box fraction must be in (0, 1], got {fraction}")
    return float(fraction)


def boxed_positives(coco: dict) -> list[dict]:
    """The images of ``coco`` with boxes whose boxes are complete (``annotated`` not false)."""
    with_boxes = {a["image_id"] for a in coco.get("annotations", [])}
    return [im for im in coco["images"] if im["id"] in with_boxes and im.get("annotated", True)]


def choose_boxed(images: list[dict], fraction: float, seed: int) -> set[int]:
    """Ids of the images that keep their boxes: ``round(fraction * n)`` (at least one) of the
    ``n`` images of each body part (one group without ``body_part``), drawn with ``seed``.
    The same images, fraction and seed always give the same choice."""
    groups = defaultdict(list)
    for im in images:
        groups[str(im.get("body_part", ""))].append(im["id"])
    rng = np.random.default_rng(seed)
    keep = set()
    for part in sorted(groups):
        ids = sorted(groups[part])
        k = max(1, int(round(fraction * len(ids))))
        keep.update(int(i) for i in rng.permutation(ids)[:k])
    return keep


def keep_box_fraction(coco: dict, fraction: float, seed: int = 0) -> tuple[dict, dict, dict]:
    """Hide the boxes of all but ``fraction`` of the boxed positives of ``coco``.

    Returns:
        ``(kept, hidden, counts)``: ``kept`` has every image of ``coco``, the unchosen boxed
        positives marked ``"annotated": false`` (``image_label`` 1) without boxes; ``hidden``
        holds those images with their boxes (COCO); ``counts`` the images by kind.
    """
    check_fraction(fraction)
    positives = boxed_positives(coco)
    keep = choose_boxed(positives, fraction, seed)
    hide = {im["id"] for im in positives} - keep
    images = []
    for im in coco["images"]:
        if im["id"] in hide:
            im = {**im, "annotated": False, "image_label": 1}
        images.append(im)
    anns = [a for a in coco.get("annotations", []) if a["image_id"] not in hide]
    hidden_anns = [a for a in coco.get("annotations", []) if a["image_id"] in hide]
    info = {**coco.get("info", {}), "box_fraction": {"fraction": fraction, "seed": seed}}
    kept = {**coco, "info": info, "images": images, "annotations": anns}
    hidden = {
        **coco,
        "info": {**info, "hidden_boxes": True},
        "images": [im for im in coco["images"] if im["id"] in hide],
        "annotations": hidden_anns,
    }
    counts = {
        "images": len(images),
        "boxed_positives": len(keep),
        "image_label_only_positives": len(hide)
        + sum(1 for im in coco["images"] if im.get("annotated", True) is False),
        "boxes_kept": len(anns),
        "boxes_hidden": len(hidden_anns),
    }
    return kept, hidden, counts
