"""Data: raw-format readers, COCO writing, registration, synthetic data, mappers.

Importing this package registers every dataset found under ``$DETECTRON2_DATASETS``.
"""

from .register import datasets_root, register_all, register_dataset

register_all()

__all__ = ["datasets_root", "register_all", "register_dataset"]
