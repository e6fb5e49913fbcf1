"""Training engine: the project's Trainer and hooks."""

from .trainer import Trainer

__all__ = ["Trainer"]
