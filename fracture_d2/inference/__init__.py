"""Inference on new images: PNG/JPEG/DICOM loading, batched prediction, prediction runs."""

from .dicom import read_dicom
from .loading import collect_inputs, load_image
from .predictor import BatchPredictor, load_cfg

__all__ = ["BatchPredictor", "collect_inputs", "load_cfg", "load_image", "read_dicom"]
