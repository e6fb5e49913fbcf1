"""Detectron2's ``Box2BoxTransform`` in fewer operations and without its host wait.

Detectron2 encodes and decodes boxes coordinate by coordinate (40 operators for ``get_deltas``,
46 for ``apply_deltas``, each a kernel launch on a GPU; 23 and 24 here) and ends ``get_deltas``
with ``assert (src_widths > 0).all().item()``, which makes the host wait for the GPU in the
middle of every training step (twice: RPN and box-head losses). The versions here compute x and
y (and width and height) as pairs, with the same arithmetic element by element, so the results
are bit-identical (tested), and check the widths with ``torch._assert_async``: on a GPU the
check runs on the device without a wait (an invalid box stops the process with a device-side
assert instead of a Python ``AssertionError``); on a CPU it raises at once.

The batched heads and the static inference path encode and decode through :func:`encode` and
:func:`decode`, which fall back to the transform's own methods where the arithmetic here does
not apply.
"""

from __future__ import annotations

import torch
from detectron2.modeling.box_regression import Box2BoxTransform


def _centers_and_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 4) boxes -> (..., 2) centres and (..., 2) widths/heights, as Detectron2 computes
    them (``x0 + 0.5 * w``)."""
    sizes = boxes[..., 2:] - boxes[..., :2]
    return boxes[..., :2] + 0.5 * sizes, sizes


def paired(transform) -> bool:
    """Whether ``transform`` is a plain ``Box2BoxTransform`` whose weights are equal for x and y
    and for width and height (Detectron2's defaults: (1, 1, 1, 1) for the RPN, (10, 10, 5, 5)
    for the box head). Scaled by the same Python numbers as Detectron2 does, the paired
    arithmetic gives its values on every device (a weight tensor would divide exactly where a
    GPU multiplies by the reciprocal of a Python number)."""
    w = tuple(transform.weights) if type(transform) is Box2BoxTransform else ()
    return len(w) == 4 and w[0] == w[1] and w[2] == w[3]


def encode(transform, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """``transform.get_deltas(src_boxes, target_boxes)``, paired where :func:`paired`."""
    if not paired(transform):
        return transform.get_deltas(src_boxes, target_boxes)
    return _get_deltas(transform, src_boxes, target_boxes)


def decode(transform, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``transform.apply_deltas(deltas, boxes)``, paired where :func:`paired`."""
    if not paired(transform):
        return transform.apply_deltas(deltas, boxes)
    return _apply_deltas(transform, deltas, boxes)


def _get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """``Box2BoxTransform.get_deltas``: (N, 4) deltas (dx, dy, dw, dh) from ``src_boxes`` to
    ``target_boxes``; bit-identical, no host wait (see the module doc)."""
    w_ctr, w_size = self.weights[0], self.weights[2]  # equal in pairs: paired()
    src_ctr, src_size = _centers_and_sizes(src_boxes)
    target_ctr, target_size = _centers_and_sizes(target_boxes)
    d_ctr = w_ctr * (target_ctr - src_ctr) / src_size
    d_size = w_size * torch.log(target_size / src_size)
    torch._assert_async(
        (src_size[:, 0] > 0).all(), "Input boxes to Box2BoxTransform are not valid!"
    )
    return torch.cat([d_ctr, d_size], dim=1)


def _apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """``Box2BoxTransform.apply_deltas``: (N, k * 4) deltas applied to (N, 4) boxes;
    bit-identical (float32 decoding, ``scale_clamp`` on dw, dh)."""
    w_ctr, w_size = self.weights[0], self.weights[2]
    deltas = deltas.float()  # as Detectron2: fp32 for decoding precision
    boxes = boxes.to(deltas.dtype)
    ctr, size = _centers_and_sizes(boxes)
    d = deltas.reshape(deltas.shape[0], deltas.shape[1] // 4, 4)  # (N, k, 4)
    d_ctr = d[..., :2] / w_ctr
    d_size = torch.clamp(d[..., 2:] / w_size, max=self.scale_clamp)
    pred_ctr = d_ctr * size[:, None] + ctr[:, None]
    half = 0.5 * (torch.exp(d_size) * size[:, None])
    return torch.cat([pred_ctr - half, pred_ctr + half], dim=-1).reshape(deltas.shape)
