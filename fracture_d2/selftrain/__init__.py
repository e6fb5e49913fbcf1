"""Learning from image labels beyond the model: pseudo boxes from a teacher, self-training
rounds, and the benchmark that measures them (README "Training with image labels")."""

from .pseudo_labels import PseudoRule, pseudo_label, score_pseudo_boxes
from .rounds import self_training_steps

__all__ = ["PseudoRule", "pseudo_label", "score_pseudo_boxes", "self_training_steps"]
