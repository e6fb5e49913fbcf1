"""Read and validate Detectron2/COCO detection results (``coco_instances_results.json``)
against a dataset's ground truth."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from .inputs import EvaluationError, GroundTruth, Predictions


def _first_bad_entry(data, source):
    for n, d in enumerate(data):
        if not isinstance(d, dict):
            raise EvaluationError(source, f"entry {n}: not a prediction object: {str(d)[:80]}")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in d:
                raise EvaluationError(source, f"entry {n}: no {key!r} (Detectron2 COCO results)")
        box = d["bbox"]
        if not isinstance(box, list | tuple) or len(box) != 4:
            raise EvaluationError(source, f"entry {n}: bbox must be [x, y, w, h], got {box!r}")
        try:
            float(d["score"]), int(d["image_id"]), [float(v) for v in box]
        except (TypeError, ValueError):
            raise EvaluationError(
                source, f"entry {n}: non-numeric value in {str(d)[:120]}"
            ) from None
    raise EvaluationError(source, "cannot be read as COCO detection results")


def predictions_from_list(data, gt: GroundTruth, source="<predictions>", allow_empty=False):
    """Validate Detectron2/COCO detection results against ``gt`` -> :class:`Predictions`.

    Raises:
        EvaluationError: not a list, empty (unless ``allow_empty``), malformed entries, boxes
            with negative size, non-finite scores, unknown image or category ids.
    """
    if not isinstance(data, list):
        raise EvaluationError(source, "must be a JSON list of detections (coco_instances_results)")
    if not data and not allow_empty:
        raise EvaluationError(
            source, "has no predictions (empty list); did inference run on this dataset?"
        )
    try:
        n = len(data)
        image_id = np.fromiter((d["image_id"] for d in data), np.int64, n)
        category = np.fromiter((d["category_id"] for d in data), np.int64, n)
        score = np.fromiter((d["score"] for d in data), np.float64, n)
        if any(len(d["bbox"]) != 4 for d in data):
            raise ValueError("a bbox without 4 numbers")
        boxes = itertools.chain.from_iterable(d["bbox"] for d in data)
        xywh = np.fromiter(boxes, np.float64, 4 * n).reshape(n, 4)
    except (KeyError, TypeError, ValueError, IndexError):
        _first_bad_entry(data, source)
    bad = ~np.isfinite(xywh).all(1) | (xywh[:, 2] < 0) | (xywh[:, 3] < 0) | ~np.isfinite(score)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EvaluationError(
            source,
            f"entry {i}: non-finite score or box with negative size: {data[i]} "
            f"({int(bad.sum())} such entries)",
        )
    order = np.argsort(gt.image_ids)
    pos = np.searchsorted(gt.image_ids, image_id, sorter=order).clip(0, max(len(order) - 1, 0))
    index = order[pos] if len(order) else pos
    unknown = (gt.image_ids[index] != image_id) if len(order) else np.ones(n, bool)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise EvaluationError(
            source,
            f"entry {i}: image_id {image_id[i]} is not in dataset {gt.name} ({gt.source}); "
            f"{int(unknown.sum())} of {n} predictions name unknown image ids "
            "(were they made on another dataset?)",
        )
    if gt.categories:
        bad_cat = ~np.isin(category, list(gt.categories))
        if bad_cat.any():
            i = int(np.flatnonzero(bad_cat)[0])
            raise EvaluationError(
                source,
                f"entry {i}: category_id {category[i]} is not a category of {gt.name} "
                f"{gt.categories}",
            )
    return Predictions(str(source), index.astype(np.int64), xywh, score, category)


def read_prediction_file(path) -> tuple[list, list | None]:
    """A predictions file: Detectron2's ``coco_instances_results.json`` (a list of detections)
    or ``tools/predict.py``'s ``predictions.json`` (``images`` + ``results``).

    Returns:
        ``(detections, images)``: the COCO results list, and the predict.py ``images`` entries
        (None for a plain results list).

    Raises:
        EvaluationError: unreadable, empty, not JSON, or neither format.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EvaluationError(path, f"cannot read the predictions ({e.strerror})") from None
    if not text.strip():
        raise EvaluationError(
            path, "is empty; expected Detectron2's coco_instances_results.json (a JSON list)"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise EvaluationError(path, f"is not valid JSON ({e.msg})", e.lineno) from None
    if isinstance(data, dict):
        if "results" not in data or "images" not in data:
            raise EvaluationError(path, "expected a COCO results list or tools/predict.py output")
        return data["results"], data["images"]
    return data, None


def load_predictions(path, gt: GroundTruth, allow_empty: bool = False) -> Predictions:
    """Read a predictions file (:func:`read_prediction_file`) and validate it against ``gt``
    (``allow_empty``: a model that detected nothing, e.g. a training run's own inference)."""
    return predictions_from_list(read_prediction_file(path)[0], gt, Path(path), allow_empty)


def with_head_scores(preds: Predictions, gt: GroundTruth, scores: dict, source) -> Predictions:
    """``preds`` with the image-level head's probabilities ``scores`` ({image id: p}) aligned to
    ``gt``'s images (NaN for images without one).

    Raises:
        EvaluationError: an image id that ``gt`` does not have, or a probability outside [0, 1].
    """
    index = {int(i): n for n, i in enumerate(gt.image_ids)}
    head = np.full(len(gt), np.nan)
    for image_id, p in scores.items():
        if int(image_id) not in index:
            raise EvaluationError(source, f"image id {image_id} is not in dataset {gt.name}")
        if not 0.0 <= float(p) <= 1.0:
            raise EvaluationError(source, f"image id {image_id}: probability {p} not in [0, 1]")
        head[index[int(image_id)]] = float(p)
    preds.head = head
    return preds


def load_head_scores(path) -> dict:
    """The ``{image id: probability}`` JSON the Trainer's evaluator writes
    (``image_head_scores.json``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EvaluationError(path, f"cannot read the image-level scores ({e})") from None
    if not isinstance(data, dict):
        raise EvaluationError(path, "must be a JSON object {image id: probability}")
    return data
