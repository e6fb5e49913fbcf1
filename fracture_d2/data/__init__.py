"""Data: raw-format readers, COCO writing/validation, registration, synthetic data, mappers.

Datasets are registered by an explicit call, as Detectron2's ``builtin.py`` does for its own:
:func:`register_all` registers every dataset prepared under ``$DETECTRON2_DATASETS`` (the
tools call it first thing). Importing this package registers nothing and does not load
detectron2 or torch, so the converters (``datasets/prepare_*.py``) stay light.
"""

from .register import datasets_root, register_all, register_dataset

__all__ = ["datasets_root", "register_all", "register_dataset"]
