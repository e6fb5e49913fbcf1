"""Batched inference of a trained detector on in-memory radiographs, on CPU or GPU.

Test-time preprocessing is the project's :class:`RadiographMapper` (``is_train=False``): the
same resize and channel layout as evaluation, applied to an image already in memory (so
DICOM files, which the mapper cannot read, get exactly the same treatment).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Instances

from fracture_d2 import fast
from fracture_d2.config import get_fracture_cfg
from fracture_d2.data.image_io import to_model_format
from fracture_d2.data.mapper import RadiographMapper
from fracture_d2.fast.device import batch_to_device


def load_cfg(config_file: str, opts=()):
    """A frozen config from a YAML file plus trailing ``KEY VALUE`` overrides."""
    cfg = get_fracture_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def check_weights(cfg) -> str:
    """``MODEL.WEIGHTS``, after making sure it names a checkpoint (a random model detects
    nothing useful, so inference without weights is refused rather than run)."""
    weights = cfg.MODEL.WEIGHTS
    if not weights:
        raise ValueError(
            "MODEL.WEIGHTS is empty: add 'MODEL.WEIGHTS path/to/model_final.pth' after the "
            "options"
        )
    if "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"{weights}: checkpoint not found (MODEL.WEIGHTS)")
    return weights


class BatchPredictor:
    """Run a detector on batches of 2-D uint8 radiographs; like ``DefaultPredictor``, batched.

    Args:
        cfg: a config with ``MODEL.WEIGHTS`` set; ``MODEL.DEVICE`` picks CPU or GPU.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        # FRACTURE.FAST switches (channels-last, compiled backbone) as in training/evaluation
        self.model = fast.prepare_model(build_model(cfg), cfg)
        self.model.eval()
        DetectionCheckpointer(self.model).load(check_weights(cfg))
        mapper = RadiographMapper(cfg, is_train=False)
        self._resize, self._format = mapper.resize, mapper.image_format
        # FRACTURE.FAST.STATIC_INFERENCE: the model, or its static-shape inference wrapper
        self._infer = fast.inference_model(self.model, cfg)
        # DATALOADER.PIN_MEMORY on a GPU: inputs copied without the host waiting for the GPU
        self._async_copies = cfg.DATALOADER.PIN_MEMORY and cfg.MODEL.DEVICE.startswith("cuda")

    def preprocess(self, gray: np.ndarray) -> dict:
        """One model input dict (``image`` CxHxW, original ``height``/``width``)."""
        aug_input = T.AugInput(to_model_format(gray, self._format))
        self._resize(aug_input)
        image = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return {"image": image, "height": gray.shape[0], "width": gray.shape[1]}

    def __call__(self, grays: list[np.ndarray]) -> list[Instances]:
        """Detections per image, boxes in original pixel coordinates, on the CPU (float32).

        Runs under ``FRACTURE.FAST.INFERENCE_DTYPE`` autocast, as evaluation does.
        """
        return [out["instances"] for out in self.run(grays)]

    @torch.inference_mode()
    def run(self, grays: list[np.ndarray]) -> list[dict]:
        """Per image ``{"instances": ..., "head_score": float | None}``: the detections as
        :meth:`__call__` gives them, and the image-level head's probability (None for models
        without one)."""
        if not grays:
            return []
        inputs = [self.preprocess(g) for g in grays]
        if self._async_copies:
            inputs = batch_to_device(inputs, self.cfg.MODEL.DEVICE)
        with fast.inference_autocast(self.cfg):
            outputs = self._infer(inputs)
        results = []
        for o in outputs:
            inst = o["instances"].to("cpu")
            inst.pred_boxes.tensor = inst.pred_boxes.tensor.float()
            inst.scores = inst.scores.float()
            head = float(o["image_score"]) if "image_score" in o else None
            results.append({"instances": inst, "head_score": head})
        return results


def instances_to_results(instances: Instances, image_id: int) -> list[dict]:
    """COCO results entries (``bbox`` as x, y, w, h; ``category_id`` = class index + 1)."""
    boxes = instances.pred_boxes.tensor.numpy()
    scores = instances.scores.numpy()
    classes = instances.pred_classes.numpy()
    return [
        {
            "image_id": int(image_id),
            "category_id": int(c) + 1,
            "bbox": [round(float(v), 2) for v in (b[0], b[1], b[2] - b[0], b[3] - b[1])],
            "score": round(float(s), 5),
        }
        for b, s, c in zip(boxes, scores, classes, strict=True)
    ]
