"""Anchors made on the features' device and remembered per feature-map size."""

from __future__ import annotations

import torch
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.structures import Boxes


def device_anchors(generator: DefaultAnchorGenerator, features: list) -> list[Boxes]:
    """``DefaultAnchorGenerator.forward`` with each level's grid made on the features' device:
    Detectron2 makes the grid offsets with ``torch.arange`` on the CPU and copies them over, two
    blocking copies per level, each a wait for the GPU (10 per batch with FPN's five levels).
    The same values (integer multiples of the stride, plus ``offset`` x stride: exact in
    float32 on any device)."""
    anchors = []
    cell_anchors = [b for _, b in generator.cell_anchors.named_buffers()]
    for feature, stride, base in zip(features, generator.strides, cell_anchors, strict=True):
        h, w = feature.shape[-2:]
        start = generator.offset * stride
        xs = torch.arange(start, w * stride, step=stride, dtype=torch.float32, device=base.device)
        ys = torch.arange(start, h * stride, step=stride, dtype=torch.float32, device=base.device)
        shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")
        shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
        shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
        anchors.append(Boxes((shifts.view(-1, 1, 4) + base.view(1, -1, 4)).reshape(-1, 4)))
    return anchors


class CachedAnchorGenerator(DefaultAnchorGenerator):
    """``DefaultAnchorGenerator`` (same parameters, same anchors) whose anchors are made on the
    device (:func:`device_anchors`) and remembered per feature-map sizes and device: they depend
    on nothing else, and rebuilding them costs about 50 small operations per batch (a kernel
    launch each on a GPU). The batched RPN builds its anchor generator as this one."""

    CACHE_SIZE = 32  # distinct feature-map sizes remembered (multi-scale training: a few)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cache = {}

    def forward(self, features):
        key = (
            tuple(tuple(f.shape[-2:]) for f in features),
            features[0].device,
            torch.is_inference_mode_enabled(),  # inference tensors must not reach training
        )
        if key not in self._cache:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = device_anchors(self, features)
        return self._cache[key]
