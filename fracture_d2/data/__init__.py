"""Data: raw-format readers, COCO writing/validation, registration, synthetic data, mappers.

Importing this package registers every dataset found under ``$DETECTRON2_DATASETS`` with
Detectron2's catalogs: at once if ``detectron2.data`` is already imported (the trainer and the
tools import it first), otherwise the moment it is. The converters (``datasets/prepare_*.py``)
thus import ``fracture_d2.data.*`` without loading detectron2 and torch, which alone take about
1 GB of memory, and a full MURA conversion stays well under that.
"""

import importlib.abc
import importlib.util
import sys

from .register import datasets_root, register_all, register_dataset


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Run :func:`register_all` right after ``detectron2.data`` is first imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "detectron2.data":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            register_all()

        spec.loader.exec_module = exec_then_register
        return spec


if "detectron2.data" in sys.modules:
    register_all()
elif not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterImport())

__all__ = ["datasets_root", "register_all", "register_dataset"]
