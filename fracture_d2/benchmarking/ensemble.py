"""Fuse several runs' detections with Weighted Boxes Fusion (the ``ensemble-boxes`` package,
Solovyev et al. 2021): per image, boxes of all runs that overlap (IoU > ``iou_thr``, same
class) become one box at their score-weighted mean position; its score is the mean over runs
(a box found by one run of three keeps a third of its score).

WBF wants coordinates in [0, 1]. COCO results carry no image size, so each image's boxes are
divided by the largest coordinate any run predicted on it; IoU and weighted means do not
change under a common scale, so this gives the same fusion as the true image size would.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..utils_io import write_json_atomic
from .ensemble_inputs import PredictionFile

CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")


def _by_image(files: list[PredictionFile]) -> dict:
    """image id -> per file ``(boxes xyxy, scores, labels)``."""
    out = defaultdict(lambda: [([], [], []) for _ in files])
    for k, f in enumerate(files):
        for r in f.results:
            if float(r["score"]) <= 0.0:  # no weight in a score-weighted mean (WBF gives NaN)
                continue
            x, y, w, h = (float(v) for v in r["bbox"])
            boxes, scores, labels = out[int(r["image_id"])][k]
            boxes.append([x, y, x + w, y + h])
            scores.append(float(r["score"]))
            labels.append(int(r["category_id"]))
    return out


def fuse(
    files: list[PredictionFile],
    weights=None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: str = "avg",
    max_dets: int = 100,
) -> list[dict]:
    """WBF of the files' detections, image by image -> COCO results (xywh), best first."""
    from ensemble_boxes import weighted_boxes_fusion

    if conf_type not in CONF_TYPES:  # ensemble-boxes would print and exit() the process
        raise ValueError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}")
    results = []
    per_image = _by_image(files)
    for image_id in tqdm(sorted(per_image), desc="WBF", unit="img", disable=len(per_image) < 500):
        runs = per_image[image_id]
        scale = max((max(max(b[2], b[3]) for b in r[0]) for r in runs if r[0]), default=1.0)
        scale = max(scale, 1e-6)
        boxes, scores, labels = weighted_boxes_fusion(
            [np.clip(np.asarray(r[0]).reshape(-1, 4) / scale, 0.0, 1.0) for r in runs],
            [r[1] for r in runs],
            [r[2] for r in runs],
            weights=weights,
            iou_thr=iou_thr,
            skip_box_thr=skip_box_thr,
            conf_type=conf_type,
        )
        for i in np.argsort(-scores, kind="stable")[:max_dets]:
            x0, y0, x1, y1 = (float(v) * scale for v in boxes[i])
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(labels[i]),
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "score": round(float(scores[i]), 5),
                }
            )
    return results


def _predict_doc(first: PredictionFile, results: list, info: dict) -> dict:
    """tools/predict.py's document for fused results: its images with scores recomputed."""
    doc = dict(first.doc)
    best = defaultdict(float)
    count = defaultdict(int)
    for r in results:
        best[r["image_id"]] = max(best[r["image_id"]], r["score"])
        count[r["image_id"]] += 1
    threshold = float(doc.get("info", {}).get("threshold", 0.5))
    doc["images"] = [
        {k: v for k, v in im.items() if k != "overlay"}  # the runs' overlays show other boxes
        | {
            "score": best[im["id"]],
            "positive": best[im["id"]] >= threshold,
            "n_boxes": count[im["id"]],
        }
        for im in doc["images"]
    ]
    doc["info"] = {**doc.get("info", {}), "ensemble": info}
    doc["results"] = results
    return doc


def write_ensemble(out_dir, files: list[PredictionFile], results: list, info: dict) -> Path:
    """``out_dir/predictions.json`` in the inputs' format (a COCO results list, which
    tools/evaluate.py reads, or tools/predict.py's document) and ``ensemble_info.json``."""
    out = Path(out_dir)
    path = out / "predictions.json"
    doc = results if files[0].kind == "coco" else _predict_doc(files[0], results, info)
    write_json_atomic(path, doc)
    write_json_atomic(out / "ensemble_info.json", info, indent=1)
    return path
