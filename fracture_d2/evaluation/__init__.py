"""Evaluation: lesion matching, FROC, image- and study-level metrics, report writers."""

from .matching import match_detections

__all__ = ["match_detections"]
