"""Evaluation: lesion matching, COCO AP per body part, FROC, image- and study-level metrics
with patient-bootstrap CIs, report writers, Detectron2 evaluators, leaderboards.

Typical use (what ``tools/evaluate.py`` does)::

    gt = load_ground_truth(json_file, name, image_table)
    metrics = evaluate_predictions(gt, load_predictions(path, gt), EvalOptions())
    write_report(metrics, out_dir)
"""

from .inputs import EvaluationError, load_ground_truth
from .matching import match_detections
from .predictions import load_predictions
from .report import write_report
from .scores import image_score, study_score
from .suite import EvalOptions, evaluate_predictions

__all__ = [
    "EvalOptions",
    "EvaluationError",
    "evaluate_predictions",
    "image_score",
    "load_ground_truth",
    "load_predictions",
    "match_detections",
    "study_score",
    "write_report",
]
