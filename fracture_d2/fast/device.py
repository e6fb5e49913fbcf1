"""Host-device copies that do not make the host wait for the GPU.

A blocking host-to-GPU copy (Detectron2's ``tensor.to(device)`` of every input image, box and
class tensor) synchronises the whole stream: the host stops issuing work until the GPU has
caught up. A device-to-host read (``.item()``, ``.tolist()``) always waits; reading several
tensors in one copy waits once instead of once each.
"""

from __future__ import annotations

import torch


def to_device_async(x: torch.Tensor, device) -> torch.Tensor:
    """``x`` on ``device`` without a host wait: a CPU tensor bound for a GPU goes through pinned
    memory (pinned here if the loader did not) with ``non_blocking``."""
    device = torch.device(device)
    if x.device.type == "cpu" and device.type == "cuda" and not x.is_pinned():
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def host_to_device(values, device, dtype=torch.float32) -> torch.Tensor:
    """A small host list (or CPU tensor) as a device tensor through pinned memory, so the copy
    does not wait for the GPU's queue (a plain ``torch.tensor(..., device="cuda")`` does)."""
    return to_device_async(torch.as_tensor(values, dtype=dtype), device)


def device_to_host(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Several device tensors on the host in one copy (one host wait instead of one each),
    back in their shapes and dtypes. They travel as float32, so integers must stay below 2**24
    (counts, indices, classes) and floating-point values must fit float32 exactly (float32,
    bfloat16, float16)."""
    packed = torch.cat([t.reshape(-1).float() for t in tensors]).cpu()
    parts = packed.split([t.numel() for t in tensors])
    return [p.view(t.shape).to(t.dtype) for p, t in zip(parts, tensors, strict=True)]


def batch_to_device(batch: list[dict], device) -> list[dict]:
    """A batch (Detectron2's list of dicts) with its tensors and the tensors of its
    ``Instances`` (boxes and classes; other structures by their own ``.to``) on ``device``,
    copied without host waits. Detectron2's model then finds them there and copies nothing."""
    from detectron2.structures import Boxes, Instances

    def move(v):
        if isinstance(v, torch.Tensor):
            return to_device_async(v, device)
        if isinstance(v, Boxes):  # RotatedBoxes too: constructed from their tensor
            return type(v)(to_device_async(v.tensor, device))
        if isinstance(v, Instances):
            out = Instances(v.image_size)
            for k, f in v.get_fields().items():
                out.set(k, move(f))
            return out
        if hasattr(v, "to"):
            return v.to(device)  # masks, keypoints: their own (blocking) copy, as Detectron2's
        return v

    return [{k: move(v) for k, v in d.items()} for d in batch]


class DeviceBatches:
    """A data loader whose batches come out already on ``device`` (:func:`batch_to_device`),
    for ``DATALOADER.PIN_MEMORY`` on a GPU: the copies queue behind the GPU's work instead of
    waiting for it (about 3 host waits per training image fewer, 1 per test image)."""

    def __init__(self, loader, device):
        self.loader = loader
        self.device = torch.device(device)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield batch_to_device(batch, self.device)
