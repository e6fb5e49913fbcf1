"""Evaluation: lesion matching, FROC, image- and study-level metrics, report writers."""

from .matching import match_detections
from .scores import image_score, study_score

__all__ = ["image_score", "match_detections", "study_score"]
