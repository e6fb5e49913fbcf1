"""Per-image prediction fields, shared by ``predictions.json`` (:mod:`.run`, tools/predict.py)
and the REST service (:mod:`fracture_d2.serving`), so both answer with the same numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from detectron2.structures import Instances

from fracture_d2.data.coco import DEFAULT_CLASSES
from fracture_d2.evaluation import image_score

from .predictor import instances_to_results


def categories(cfg) -> list[dict]:
    """COCO categories of the model's classes (the project's names when the count matches)."""
    n = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    names = DEFAULT_CLASSES if n == len(DEFAULT_CLASSES) else [f"class_{k}" for k in range(n)]
    return [{"id": k, "name": c} for k, c in enumerate(names, 1)]


@dataclass
class ImagePrediction:
    """One image's entry in ``predictions.json`` ``images``, its ``results`` and what made them.

    Attributes:
        entry: ``id``, ``file_name``, ``width``, ``height``, ``score``, ``positive``, ``n_boxes``.
        results: COCO results of the boxes scoring ``>= threshold`` (``bbox`` x, y, w, h).
        kept: those boxes as Detectron2 ``Instances`` (for drawing).
        score: the unrounded image score.
    """

    entry: dict
    results: list[dict]
    kept: Instances
    score: float


def image_prediction(
    instances: Instances,
    image_id: int,
    file_name: str,
    shape: tuple[int, int],
    threshold: float = 0.5,
    score_method: str = "max",
    head_score: float | None = None,
) -> ImagePrediction:
    """The per-image fields of a prediction.

    The image ``score`` comes from *all* the model's boxes (before the threshold, so it stays
    a continuous score for ROC analysis); ``positive`` is ``score >= threshold``; only boxes
    scoring ``>= threshold`` are listed.

    Args:
        instances: the detector's output for the image (CPU, original pixel coordinates).
        image_id: the ``id`` of the entry and ``image_id`` of its results.
        file_name: the name to report for the image.
        shape: the image's (height, width) in pixels.
        threshold: box and image operating point.
        score_method: ``max``, ``noisy_or``, ``head`` or ``mean_head_max``
            (:func:`fracture_d2.evaluation.image_score`).
        head_score: the image-level head's probability (a MixedSupervisionRCNN model), also
            written as ``head_score``.
    """
    score = image_score(instances.scores.numpy(), score_method, head_score)
    kept = instances[instances.scores >= threshold]
    entry = {
        "id": int(image_id),
        "file_name": str(file_name),
        "width": int(shape[1]),
        "height": int(shape[0]),
        "score": round(score, 5),
        "positive": bool(score >= threshold),
        "n_boxes": len(kept),
    }
    if head_score is not None:
        entry["head_score"] = round(float(head_score), 5)
    return ImagePrediction(entry, instances_to_results(kept, image_id), kept, score)


def draw_prediction(gray: np.ndarray, pred: ImagePrediction, score_method: str) -> np.ndarray:
    """The overlay of an image's kept boxes and its score, as an RGB uint8 image."""
    from fracture_d2.visualization.overlay import DrawBox, draw_boxes

    kept = pred.kept
    boxes = [
        DrawBox(tuple(b.tolist()), "pred", f"{s:.2f}")
        for b, s in zip(kept.pred_boxes.tensor, kept.scores, strict=True)
    ]
    return draw_boxes(gray, boxes, header=f"image score {pred.score:.2f} ({score_method})")
