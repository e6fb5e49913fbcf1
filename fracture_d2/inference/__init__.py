"""Inference on new images: PNG/JPEG/DICOM loading, batched prediction, prediction runs."""

from fracture_d2.data.dicom import read_dicom
from fracture_d2.data.images import load_image

from .loading import collect_inputs
from .predictor import BatchPredictor, load_cfg

__all__ = ["BatchPredictor", "collect_inputs", "load_cfg", "load_image", "read_dicom"]
