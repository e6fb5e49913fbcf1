"""Ground truth and predictions per image, their TP/FP/missed status, and image selection.

Status comes from :func:`fracture_d2.evaluation.match_detections` (the FROC hit rule), applied
to the predictions at or above the score threshold, so pictures and metrics agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fracture_d2.data.errors import DataError
from fracture_d2.evaluation import image_score, match_detections
from fracture_d2.evaluation.predictions import read_prediction_file

SELECTIONS = ("worst-fp", "missed", "tp", "sample", "all")
SELECTION_TITLES = {
    "worst-fp": "Highest-scoring false positives",
    "missed": "Missed fractures",
    "tp": "Best true positives",
    "sample": "Random sample",
    "all": "All images",
    "chosen": "Chosen images",
}


@dataclass(eq=False)  # identity: an image appears in several selections
class ImageResult:
    """One image: its ground truth, its predictions, and (after :meth:`match`) their status.

    ``annotated`` is False for images whose fractures have no boxes (image-level label only):
    their predictions cannot be judged. ``has_gt`` is False without a dataset.
    """

    image_id: int
    file_name: str
    width: int = 0
    height: int = 0
    body_part: str = ""
    has_gt: bool = True
    annotated: bool = True
    image_label: int | None = None
    gt: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shown: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    is_tp: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    hit_by: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    @property
    def judged(self) -> bool:
        """Whether predictions can be called true/false positives on this image."""
        return self.has_gt and self.annotated

    def match(self, threshold: float, iou: float) -> ImageResult:
        """Match the predictions scoring ``>= threshold`` to the ground truth at ``iou``."""
        self.shown = np.flatnonzero(self.scores >= threshold)
        self.shown = self.shown[np.argsort(-self.scores[self.shown], kind="stable")]
        self.is_tp, self.hit_by = match_detections(
            self.gt, self.boxes[self.shown], self.scores[self.shown], "iou", iou
        )
        return self

    @property
    def n_tp(self) -> int:
        return int(self.is_tp.sum()) if self.judged else 0

    @property
    def n_fp(self) -> int:
        return int((~self.is_tp).sum()) if self.judged else 0

    @property
    def n_missed(self) -> int:
        return int((self.hit_by < 0).sum()) if self.judged else 0

    @property
    def max_fp_score(self) -> float:
        fp = self.scores[self.shown][~self.is_tp] if self.judged else np.zeros(0)
        return float(fp.max()) if fp.size else 0.0

    @property
    def max_tp_score(self) -> float:
        tp = self.scores[self.shown][self.is_tp] if self.judged else np.zeros(0)
        return float(tp.max()) if tp.size else 0.0

    @property
    def image_score(self) -> float:
        """Image-level score (max over all predicted boxes, before the threshold)."""
        return image_score(self.scores, "max")


def _xywh_to_xyxy(b) -> list:
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


def load_predictions(path) -> tuple[dict, list[dict] | None]:
    """Read predictions: Detectron2's ``coco_instances_results.json`` (a list) or the JSON that
    ``tools/predict.py`` writes (``images`` + ``results``).

    Returns:
        ``(by_image, images)``: image id -> ``(boxes xyxy (P, 4), scores (P,))``, and the
        ``images`` entries of a predict.py file (None for a plain results list).
    """
    data, images = read_prediction_file(path)
    grouped: dict[int, tuple[list, list]] = {}
    for i, p in enumerate(data):
        try:
            boxes, scores = grouped.setdefault(int(p["image_id"]), ([], []))
            boxes.append(_xywh_to_xyxy([float(v) for v in p["bbox"]]))
            scores.append(float(p["score"]))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(
                path, f"bad prediction entry ({e!r}); need image_id, bbox, score", i
            ) from e
    by_image = {
        k: (np.asarray(b, np.float64).reshape(-1, 4), np.asarray(s, np.float64))
        for k, (b, s) in grouped.items()
    }
    return by_image, images


def dataset_results(dataset: str) -> list[ImageResult]:
    """Ground truth of a registered dataset, per image, with its COCO image metadata."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import BoxMode

    dicts = DatasetCatalog.get(dataset)
    meta = {}
    json_file = MetadataCatalog.get(dataset).get("json_file", "")
    if json_file and Path(json_file).is_file():
        meta = {im["id"]: im for im in json.loads(Path(json_file).read_text())["images"]}
    out = []
    for d in dicts:
        m = meta.get(d["image_id"], {})
        gt = [
            BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            for a in d.get("annotations", [])
            if not a.get("iscrowd", 0)
        ]
        out.append(
            ImageResult(
                image_id=int(d["image_id"]),
                file_name=d["file_name"],
                width=int(d["width"]),
                height=int(d["height"]),
                body_part=m.get("body_part", ""),
                annotated=bool(m.get("annotated", True)),
                image_label=m.get("image_label"),
                gt=np.asarray(gt, np.float64).reshape(-1, 4),
            )
        )
    return out


def attach_predictions(results: list[ImageResult], by_image: dict) -> int:
    """Put each image's predictions on it; returns how many predicted image ids are unknown."""
    known = {r.image_id for r in results}
    for r in results:
        r.boxes, r.scores = by_image.get(r.image_id, (np.zeros((0, 4)), np.zeros(0)))
    return sum(1 for k in by_image if k not in known)


def predict_output_results(images: list[dict], by_image: dict) -> list[ImageResult]:
    """Images of a tools/predict.py run (no ground truth) with their predictions."""
    out = []
    for im in images:
        boxes, scores = by_image.get(int(im["id"]), (np.zeros((0, 4)), np.zeros(0)))
        out.append(
            ImageResult(
                image_id=int(im["id"]),
                file_name=im["file_name"],
                width=int(im.get("width", 0)),
                height=int(im.get("height", 0)),
                has_gt=False,
                boxes=boxes,
                scores=scores,
            )
        )
    return out


def select(results: list[ImageResult], how: str, k: int, seed: int = 0) -> list[ImageResult]:
    """Up to ``k`` matched images for one selection of :data:`SELECTIONS`.

    ``worst-fp``: images with false positives, highest false-positive score first;
    ``missed``: images with missed fractures, most missed first, then by image score (a missed
    fracture on an image the model thought normal is the worse miss); ``tp``: images with true
    positives, best first; ``sample``: a seeded random sample, by id; ``all``: the first ``k``
    by id.
    """
    if how == "worst-fp":
        chosen = sorted((r for r in results if r.n_fp), key=lambda r: (-r.max_fp_score, r.image_id))
    elif how == "missed":
        chosen = sorted(
            (r for r in results if r.n_missed),
            key=lambda r: (-r.n_missed, r.image_score, r.image_id),
        )
    elif how == "tp":
        chosen = sorted((r for r in results if r.n_tp), key=lambda r: (-r.max_tp_score, r.image_id))
    elif how == "sample":
        idx = np.random.default_rng(seed).permutation(len(results))[:k]
        chosen = sorted((results[i] for i in idx), key=lambda r: r.image_id)
    elif how == "all":
        chosen = sorted(results, key=lambda r: r.image_id)
    else:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {how!r}")
    return chosen[:k]


def summarize(results: list[ImageResult]) -> dict:
    """Counts at the current threshold over judged images: lesions, hits, FPs, per image."""
    judged = [r for r in results if r.judged]
    lesions = sum(len(r.gt) for r in judged)
    tp = sum(r.n_tp for r in judged)
    fp = sum(r.n_fp for r in judged)
    return {
        "images": len(results),
        "judged_images": len(judged),
        "lesions": lesions,
        "true_positives": tp,
        "false_positives": fp,
        "missed": lesions - tp,
        "sensitivity": tp / lesions if lesions else None,
        "fp_per_image": fp / len(judged) if judged else None,
        "precision": tp / (tp + fp) if tp + fp else None,
    }
