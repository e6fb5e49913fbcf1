"""All metrics of one run on one dataset, as the dict written to ``metrics.json``.

Box metrics (COCO AP, FROC) use the images whose boxes were annotated; image- and
study-level metrics use every image. Sections that cannot be computed are left out and the
reason is added to ``notes``; no value is ever NaN.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np

from .bootstrap import make_bootstrap
from .coco_parts import COCO_IMPLS, coco_metrics
from .froc import froc_metrics
from .inputs import EvaluationError, GroundTruth, Predictions
from .levels import image_metrics, image_scores, study_metrics
from .matching import CRITERIA
from .notes import Notes
from .scores import IMAGE_SCORE_METHODS, STUDY_SCORE_METHODS

logger = logging.getLogger("fracture_d2")


@dataclass
class EvalOptions:
    """What to compute; the CLI flags and ``cfg.FRACTURE.EVAL.*`` map onto these fields."""

    criterion: str = "iou"  # FROC hit rule: "iou" or "center"
    iou_threshold: float = 0.5  # FROC hit IoU (criterion "iou")
    image_method: str = "max"  # "max", "noisy_or" (box scores), "head", "mean_head_max"
    study_method: str = "max"  # study score from image scores: "max" or "mean"
    threshold: float = 0.5  # image-level operating point (score >= threshold is positive)
    study_threshold: float = 0.5  # study-level operating point (kappa; MURA uses 0.5)
    bootstrap: int = 1000  # patient-bootstrap resamples for the CIs (0: no CIs)
    seed: int = 0  # bootstrap seed
    coco_impl: str = "fast"  # COCO AP implementation: "fast" or "pycocotools"

    def check(self) -> EvalOptions:
        """Raise ValueError naming the bad option."""
        choices = {
            "criterion": CRITERIA,
            "image_method": IMAGE_SCORE_METHODS,
            "study_method": STUDY_SCORE_METHODS,
            "coco_impl": COCO_IMPLS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.bootstrap < 0:
            raise ValueError(f"bootstrap must be >= 0, got {self.bootstrap}")
        return self


def body_part_masks(gt: GroundTruth) -> dict:
    """Body part -> ``(I,)`` image mask, sorted by name; empty without body parts."""
    if gt.body_part is None:
        return {}
    return {p: gt.body_part == p for p in sorted(set(gt.body_part.tolist()))}


def check_has_positives(gt: GroundTruth) -> None:
    """Raise :class:`EvaluationError` if nothing in ``gt`` is positive (all metrics undefined)."""
    lesions = int((gt.annotated[gt.box_image] & ~gt.box_crowd).sum())
    positive = int((gt.image_label == 1).sum())
    if gt.study_label is not None:
        positive += int((gt.study_label == 1).sum())
    if lesions == 0 and positive == 0:
        raise EvaluationError(
            gt.source,
            f"dataset {gt.name} has no positives (no lesion box, no positive image or study "
            "label): AP, FROC, AUROC and kappa are undefined; evaluate a split with fractures",
        )


def counts(gt: GroundTruth, preds: Predictions) -> dict:
    on_annotated = gt.annotated[preds.image]
    out = {
        "images": len(gt),
        "annotated_images": int(gt.annotated.sum()),
        "unannotated_images": int((~gt.annotated).sum()),
        "lesions": int((gt.annotated[gt.box_image] & ~gt.box_crowd).sum()),
        "positive_images": int((gt.image_label == 1).sum()),
        "predictions": len(preds),
        "predictions_on_unannotated_images": int((~on_annotated).sum()),
    }
    if gt.patient is not None:
        out["patients"] = len(set(gt.patient.tolist()))
    if gt.study is not None:
        out["studies"] = len(set(gt.study.tolist()))
    return out


def evaluate_predictions(
    gt: GroundTruth,
    preds: Predictions,
    opts: EvalOptions | None = None,
    tables: dict | None = None,
    timing: dict | None = None,
) -> dict:
    """Compute every section for ``preds`` on ``gt``; see the module docstring.

    Args:
        tables: if a dict, receives ``"images"`` and ``"studies"`` score tables (for CSVs).
        timing: if a dict, receives the seconds each section took (kept out of the report so
            that the same inputs always give the same files).

    Raises:
        EvaluationError: the dataset has no positives at all.
    """
    opts = (opts or EvalOptions()).check()
    check_has_positives(gt)
    notes = Notes(gt.notes)
    timing = {} if timing is None else timing
    t0 = time.perf_counter()
    boot = make_bootstrap(gt.patient, len(gt), opts.bootstrap, opts.seed)
    if gt.patient is None:
        notes.append("no patient_id: the bootstrap resamples images")
    parts = body_part_masks(gt)
    if not parts:
        notes.append("no body_part: per-body-part metrics skipped")
    if counts(gt, preds)["predictions_on_unannotated_images"]:
        notes.append(
            "predictions on unannotated images (positives without boxes) count only "
            "for image- and study-level metrics"
        )
    result = {
        "dataset": gt.name,
        "dataset_json": gt.source,
        "predictions": preds.source,
        "n_images": len(gt),
        "counts": counts(gt, preds),
        "options": asdict(opts),
        "bootstrap": boot.describe(),
    }
    timing["setup"] = time.perf_counter() - t0
    t = time.perf_counter()
    coco, pr = coco_metrics(gt, preds, parts, opts.coco_impl, notes)
    timing["coco"] = time.perf_counter() - t
    t = time.perf_counter()
    froc = froc_metrics(gt, preds, parts, boot, opts.criterion, opts.iou_threshold, notes)
    timing["froc"] = time.perf_counter() - t
    t = time.perf_counter()
    scores = image_scores(gt, preds, opts.image_method)
    image = image_metrics(gt, scores, parts, boot, opts.image_method, opts.threshold, notes)
    timing["image_level"] = time.perf_counter() - t
    t = time.perf_counter()
    study, study_rows = study_metrics(
        gt, scores, boot, opts.study_method, opts.study_threshold, notes
    )
    timing["study_level"] = time.perf_counter() - t
    for key, value in (
        ("coco", coco),
        ("pr", pr),
        ("froc", froc),
        ("image_level", image),
        ("study_level", study),
    ):
        if value is not None:
            result[key] = value
    result["notes"] = notes.render()
    if tables is not None:
        tables["images"] = {
            "image_id": gt.image_ids,
            "score": scores,
            "label": gt.image_label,
            "annotated": gt.annotated,
            "body_part": gt.body_part,
            "patient_id": gt.patient,
            "study_id": gt.study,
        }
        if study_rows is not None:  # the unit index is internal; patient_id says the same
            tables["studies"] = {k: v for k, v in study_rows.items() if k != "unit"}
    logger.info(f"evaluated {gt.name}: " + ", ".join(f"{k} {v:.2f}s" for k, v in timing.items()))
    return result


def headline(metrics: dict) -> dict:
    """A flat dict of the main numbers (for the Trainer's event storage and leaderboards)."""
    out = {}
    coco = metrics.get("coco", {})
    for k, v in coco.get("overall", {}).items():
        out[k] = v
    for part, d in coco.get("per_body_part", {}).items():
        if "AP50" in d:
            out[f"AP50_{part}"] = d["AP50"]
    if "froc" in metrics:
        out["froc"] = metrics["froc"]["score"]
        for f, s in zip(
            metrics["froc"]["fp_per_image"], metrics["froc"]["sensitivity"], strict=True
        ):
            out[f"sens_at_{f:g}fppi"] = s  # no "@": TensorBoard tags allow [-/\w.]
    if "image_level" in metrics:
        out["image_auroc"] = metrics["image_level"]["auroc"]
    study = metrics.get("study_level", {})
    for k in ("kappa", "auroc"):
        if k in study:
            out[f"study_{k}"] = study[k]
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}
