"""Pseudo boxes: a teacher's detections on image-label-only positives, kept by rule, written as
a COCO JSON marked as such, and laid over the training dataset they were made for.

Each image-label-only positive is known to be abnormal, so the rule (:func:`select_boxes`) keeps
its best box if it clears ``floor`` (the fracture is there somewhere; the teacher's best guess
is the likeliest place) and every other box scoring at least ``threshold``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import DataError


def select_boxes(scores, floor: float, threshold: float) -> np.ndarray:
    """Indices (by descending score) of the boxes kept from one image's detection ``scores``:
    the best if it scores >= ``floor``, and every box scoring >= ``threshold``."""
    s = np.asarray(scores, np.float64).reshape(-1)
    order = np.argsort(-s, kind="stable")
    keep = [i for i in order if s[i] >= threshold]
    if len(order) and s[order[0]] >= floor and (not keep or keep[0] != order[0]):
        keep.insert(0, int(order[0]))
    return np.asarray(keep, dtype=np.int64)


def pseudo_coco(dataset: str, classes: list[str], detections: list, info: dict) -> dict:
    """The pseudo-box COCO JSON. ``detections``: ``(image, (boxes_xyxy, scores, labels))``
    pairs, ``image`` a COCO image entry (``id``, ``file_name``, ``width``, ``height``), labels
    0-based class indices; only images with at least one box are written. ``info`` (teacher,
    rule, round) is recorded with the dataset and class names the file is valid for."""
    images, anns = [], []
    for im, (boxes, scores, labels) in detections:
        if len(boxes) == 0:
            continue
        images.append({**im, "annotated": True, "pseudo": True})
        for (x0, y0, x1, y1), s, c in zip(boxes, scores, labels, strict=True):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": int(c) + 1,
                    "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                    "area": round(float((x1 - x0) * (y1 - y0)), 2),
                    "iscrowd": 0,
                    "score": round(float(s), 5),
                    "pseudo": True,
                }
            )
    return {
        "info": {"pseudo_boxes": {"dataset": dataset, "classes": list(classes), **info}},
        "images": images,
        "annotations": anns,
        "categories": [{"id": i, "name": c} for i, c in enumerate(classes, 1)],
    }


def read_pseudo_boxes(path, datasets: list[str], classes_of) -> tuple[str, dict]:
    """A pseudo-box file, checked to be made for one of ``datasets`` (the training sets) and
    that dataset's classes (``classes_of(name)``): ``(dataset, {image_id: [(x, y, w, h,
    class_index, score), ...]})``.

    Raises:
        DataError: unreadable, not a pseudo-box file, or made for another dataset or classes.
    """
    path = Path(path)
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
        meta = coco["info"]["pseudo_boxes"]
        dataset = meta["dataset"]
    except (OSError, ValueError) as e:
        raise DataError(path, f"cannot read the pseudo boxes ({e})") from None
    except (KeyError, TypeError):
        raise DataError(
            path, "not a pseudo-box file (no info.pseudo_boxes; see tools/pseudo_label.py)"
        ) from None
    if dataset not in datasets:
        raise DataError(path, f"made for dataset {dataset!r}, not one of {list(datasets)}")
    classes = list(classes_of(dataset))
    names = [c["name"] for c in sorted(coco.get("categories", []), key=lambda c: c["id"])]
    if names != classes or meta.get("classes") != classes:
        raise DataError(path, f"classes {names} differ from {dataset}'s {classes}")
    boxes = {int(im["id"]): [] for im in coco.get("images", [])}
    for a in coco.get("annotations", []):
        if int(a["image_id"]) not in boxes:
            raise DataError(path, f"annotation {a.get('id')}: image {a['image_id']} not listed")
        boxes[int(a["image_id"])].append((*a["bbox"], a["category_id"] - 1, a.get("score", 1.0)))
    return dataset, boxes


def apply_pseudo_boxes(dicts: list[dict], boxes: dict, path) -> int:
    """Give the image-label-only positives of Detectron2 dataset ``dicts`` their pseudo
    ``boxes`` (:func:`read_pseudo_boxes`), in place: they become boxed (``annotated``) and are
    marked ``pseudo``. Returns how many images got boxes.

    Raises:
        DataError: an image id of the file is not in the dataset, or is not an
            image-label-only positive (its real boxes, or its being normal, come first).
    """
    from detectron2.structures import BoxMode

    by_id = {d["image_id"]: d for d in dicts}
    for image_id, kept in boxes.items():
        d = by_id.get(image_id)
        if d is None:
            raise DataError(path, f"image {image_id} is not in the training dataset")
        if d.get("annotated", True) or not d.get("image_label", 0):
            raise DataError(path, f"image {image_id} is not an image-label-only positive")
        d["annotations"] = [
            {"bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS, "category_id": c, "iscrowd": 0}
            for x, y, w, h, c, _score in kept
        ]
        d["annotated"], d["pseudo"] = True, True
    return len(boxes)
