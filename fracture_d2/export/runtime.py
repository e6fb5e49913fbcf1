"""Run an exported model (TorchScript or ONNX) like the checkpoint's ``BatchPredictor``:
2-D uint8 radiographs in, Detectron2 ``Instances`` in original pixel coordinates out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from fracture_d2.data.errors import DataError
from fracture_d2.data.image_io import to_model_format
from fracture_d2.data.mapper import RadiographMapper

FORMAT = "fracture_d2.exported/1"  # an exported file's metadata format
METADATA_KEY = "fracture_d2.json"  # where the metadata lies in the file

BACKENDS = {".ts": "torchscript", ".pt": "torchscript", ".onnx": "onnxruntime"}


class Preprocess:
    """Test-time preprocessing of the project's mapper (resize, channel layout), float32."""

    def __init__(self, cfg):
        mapper = RadiographMapper(cfg, is_train=False)
        self._resize, self._format = mapper.resize, mapper.image_format

    def __call__(self, gray: np.ndarray) -> torch.Tensor:
        aug_input = T.AugInput(to_model_format(gray, self._format))
        self._resize(aug_input)
        chw = np.ascontiguousarray(aug_input.image.transpose(2, 0, 1), dtype=np.float32)
        return torch.from_numpy(chw)


def backend_of(path) -> str:
    """``torchscript`` (``.ts``, ``.pt``) or ``onnxruntime`` (``.onnx``), by the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in BACKENDS:
        raise DataError(path, f"unknown exported model type {suffix!r} (expected .ts or .onnx)")
    return BACKENDS[suffix]


def read_metadata(path) -> dict:
    """The metadata :mod:`.trace` stored in an exported file.

    Raises:
        DataError: the file is missing, or was not written by tools/export_model.py.
    """
    if not Path(path).is_file():
        raise DataError(path, "exported model not found")
    if backend_of(path) == "onnxruntime":
        import onnx

        props = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
        raw = props.get(METADATA_KEY)
    else:
        extra = {METADATA_KEY: ""}
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        raw = extra[METADATA_KEY] or None
    meta = json.loads(raw) if raw else {}
    if meta.get("format") != FORMAT:
        raise DataError(
            path, "no fracture_d2 metadata: export the model with tools/export_model.py"
        )
    return meta


def check_config(cfg, meta: dict, path) -> None:
    """Refuse a config whose test-time input differs from the one the model was exported with."""
    want = {
        "input_format": cfg.INPUT.FORMAT,
        "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
        "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
    }
    wrong = {k: (meta.get(k), v) for k, v in want.items() if meta.get(k) != v}
    if wrong:
        diff = ", ".join(f"{k} exported {a} vs config {b}" for k, (a, b) in wrong.items())
        raise DataError(path, f"exported for another input ({diff}); use its config")


class ExportedPredictor:
    """Detections of an exported model, one image per forward pass (the trace is per image).

    Args:
        cfg: the config the model was exported with (preprocessing, classes).
        path: a ``.ts`` (TorchScript) or ``.onnx`` file from tools/export_model.py.
    """

    def __init__(self, cfg, path):
        self.cfg, self.path = cfg, Path(path)
        self.backend = backend_of(path)
        self.meta = read_metadata(path)
        check_config(cfg, self.meta, path)
        self.preprocess = Preprocess(cfg)
        if self.backend == "onnxruntime":
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self._run = lambda image: session.run(None, {"image": image.numpy()})
        else:
            module = torch.jit.load(str(path), map_location="cpu").eval()
            self._run = lambda image: module(image)

    @torch.inference_mode()
    def __call__(self, grays: list[np.ndarray]) -> list[Instances]:
        """Detections per image, boxes in original pixel coordinates (float32, CPU)."""
        results = []
        for gray in grays:
            image = self.preprocess(gray)
            boxes, scores, classes = (torch.as_tensor(o) for o in self._run(image))
            inst = Instances(tuple(image.shape[1:]))
            inst.pred_boxes, inst.scores, inst.pred_classes = Boxes(boxes), scores, classes
            results.append(detector_postprocess(inst, gray.shape[0], gray.shape[1]))
        return results
