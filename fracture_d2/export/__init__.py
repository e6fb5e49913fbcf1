"""Exported models: TorchScript and ONNX files written from a checkpoint (:mod:`.trace`), run
like the checkpoint (:mod:`.runtime`) and checked against it (:mod:`.parity`)."""

from .parity import Parity, compare
from .runtime import ExportedPredictor, read_metadata
from .trace import eager_model, export_onnx, export_torchscript, metadata

__all__ = [
    "ExportedPredictor",
    "Parity",
    "compare",
    "eager_model",
    "export_onnx",
    "export_torchscript",
    "metadata",
    "read_metadata",
]
