"""COCO bbox AP overall and per body part, over the images whose boxes were annotated.

Two implementations give the same numbers (tests/test_coco_ap.py): ``fast`` (the numpy
re-implementation in :mod:`.coco_ap`, the default: seconds for MURA-valid-sized runs) and
``pycocotools`` (COCOeval itself, as Detectron2's COCOEvaluator runs it; minutes at 100
detections per image).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from tqdm import tqdm

from .coco_ap import accumulate, match_coco, pr_curve, summarize
from .inputs import GroundTruth, Predictions
from .notes import Notes

COCO_IMPLS = ("fast", "pycocotools")


def _pycocotools_precisions(gt: GroundTruth, preds: Predictions, subsets: dict) -> dict:
    """``COCOeval`` precision arrays ``(T, R, K, A)`` (maxDets 100) for each image subset."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco = COCO()
    coco.dataset = {
        "images": [{"id": int(i)} for i in gt.image_ids],
        "categories": [{"id": c, "name": n} for c, n in sorted(gt.categories.items())]
        or [{"id": int(c), "name": str(c)} for c in np.unique(gt.box_category)],
        "annotations": [
            {
                "id": n + 1,
                "image_id": int(gt.image_ids[i]),
                "category_id": int(c),
                "bbox": b.tolist(),
                "area": float(a),
                "iscrowd": int(cr),
            }
            for n, (i, c, b, a, cr) in enumerate(
                zip(
                    gt.box_image,
                    gt.box_category,
                    gt.box_xywh,
                    gt.box_area,
                    gt.box_crowd,
                    strict=True,
                )
            )
        ],
    }
    results = [
        {
            "image_id": int(gt.image_ids[i]),
            "category_id": int(c),
            "bbox": b.tolist(),
            "score": float(s),
        }
        for i, c, b, s in zip(preds.image, preds.category, preds.xywh, preds.score, strict=True)
    ]
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints progress
        coco.createIndex()
        dets = coco.loadRes(results)
        # COCOeval takes minutes at 100 detections per image: show progress per subset
        for key, mask in tqdm(subsets.items(), "COCOeval", unit="subset", disable=len(preds) < 2e4):
            ev = COCOeval(coco, dets, "bbox")
            ev.params.imgIds = sorted(int(i) for i in gt.image_ids[mask])
            ev.evaluate()
            ev.accumulate()
            p = ev.eval["precision"][..., -1]  # maxDets 100
            # COCOeval keeps categories without ground truth; they are -1 and drop out of means
            out[key] = p
    return out


def _stats(precision: np.ndarray, where: str, notes: list) -> dict:
    stats = summarize(precision)
    missing = [k for k, v in stats.items() if v is None]
    if missing and where == "overall":
        notes.append(
            f"COCO {', '.join(missing)} undefined (no ground-truth box of that size); " "left out"
        )
    elif missing:
        notes.skipped("COCO AP by size (no box of that size)", where, "/".join(missing))
    return {k: v for k, v in stats.items() if v is not None}


def coco_metrics(
    gt: GroundTruth, preds: Predictions, parts: dict, impl: str = "fast", notes: list | None = None
) -> tuple[dict | None, dict | None]:
    """COCO AP/AP50/AP75/APs/APm/APl (percent) on annotated images, overall and per part.

    Args:
        parts: body part -> ``(I,)`` image mask (may be empty).
        impl: ``"fast"`` or ``"pycocotools"``.

    Returns:
        ``(coco, pr)``: ``{"overall": {...}, "per_body_part": {...}}`` and the PR curve at IoU
        0.5; ``(None, None)`` when the annotated images hold no box.
    """
    notes = notes if notes is not None else Notes()
    if impl not in COCO_IMPLS:
        raise ValueError(f"COCO implementation must be one of {COCO_IMPLS}, got {impl!r}")
    annotated = gt.annotated
    boxes_in = annotated[gt.box_image] & ~gt.box_crowd
    if not boxes_in.any():
        notes.append("COCO AP skipped: the annotated images hold no ground-truth box")
        return None, None
    keep = annotated[preds.image]
    preds = Predictions(
        preds.source, preds.image[keep], preds.xywh[keep], preds.score[keep], preds.category[keep]
    )
    subsets = {"overall": annotated}
    subsets.update({p: annotated & m for p, m in parts.items()})
    if impl == "pycocotools" and len(preds):
        precisions = _pycocotools_precisions(gt, preds, subsets)
    else:
        m = match_coco(
            gt.box_image,
            gt.box_xywh,
            gt.box_category,
            gt.box_area,
            gt.box_crowd,
            preds.image,
            preds.xywh,
            preds.score,
            preds.category,
            gt.image_ids,
        )
        precisions = {k: accumulate(m, mask) for k, mask in subsets.items()}
    coco = {"overall": _stats(precisions["overall"], "overall", notes), "per_body_part": {}}
    for part in parts:
        p = precisions[part]
        if not (p > -1).any():
            notes.skipped("COCO AP", part, "no annotated box")
            continue
        coco["per_body_part"][part] = _stats(p, part, notes)
    return coco, pr_curve(precisions["overall"])
