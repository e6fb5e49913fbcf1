"""Image- and study-level scores from box scores (shared by evaluation and inference)."""

from __future__ import annotations

import numpy as np

IMAGE_SCORE_METHODS = ("max", "noisy_or", "head", "mean_head_max")
HEAD_METHODS = ("head", "mean_head_max")  # need the image-level head's probability
STUDY_SCORE_METHODS = ("max", "mean")


def image_score(box_scores, method: str = "max", head: float | None = None) -> float:
    """Abnormality score of an image.

    From its boxes' scores: ``max``, the highest box score (0 without boxes); ``noisy_or``,
    ``1 - prod(1 - s)``, the probability that at least one box is a fracture if boxes were
    independent. From the image-level head (``MixedSupervisionRCNN``): ``head``, its
    probability ``head``; ``mean_head_max``, the mean of that and the highest box score (two
    kinds of evidence: the head learned from every image label, the boxes localise).
    """
    if method not in IMAGE_SCORE_METHODS:
        raise ValueError(f"image score method must be one of {IMAGE_SCORE_METHODS}, got {method!r}")
    if method in HEAD_METHODS:
        if head is None or not np.isfinite(head):
            raise ValueError(
                f"image score {method!r} needs the image-level head's probability "
                "(a MixedSupervisionRCNN model's image_score)"
            )
        return float(head) if method == "head" else 0.5 * (float(head) + image_score(box_scores))
    s = np.asarray(box_scores, np.float64).reshape(-1)
    if s.size == 0:
        return 0.0
    if method == "max":
        return float(s.max())
    return float(1.0 - np.prod(1.0 - np.clip(s, 0.0, 1.0)))


def study_score(image_scores, method: str = "max") -> float:
    """Score of a study from its images' scores: ``max`` or ``mean`` (the MURA paper's)."""
    s = np.asarray(image_scores, np.float64).reshape(-1)
    if method not in STUDY_SCORE_METHODS:
        raise ValueError(f"study score method must be one of {STUDY_SCORE_METHODS}, got {method!r}")
    if s.size == 0:
        raise ValueError("a study needs at least one image score")
    return float(s.max() if method == "max" else s.mean())
