"""Detectron2's ``Box2BoxTransform`` in fewer operations and without its host wait.

Detectron2 encodes and decodes boxes coordinate by coordinate (40 operators for ``get_deltas``,
46 for ``apply_deltas``, each a kernel launch on a GPU; 23 and 24 here) and ends ``get_deltas``
with ``assert (src_widths > 0).all().item()``, which makes the host wait for the GPU in the
middle of every training step (twice: RPN and box-head losses). The versions here compute x and
y (and width and height) as pairs, with the same arithmetic element by element, so the results
are bit-identical (tested), and check the widths with ``torch._assert_async``: on a GPU the
check runs on the device without a wait (an invalid box stops the process with a device-side
assert instead of a Python ``AssertionError``); on a CPU it raises at once.

Used by ``FRACTURE.FAST.BATCHED_HEADS`` and ``STATIC_INFERENCE``
(:func:`vectorize_box_transforms`).
"""

from __future__ import annotations

import types

import torch
from detectron2.modeling.box_regression import Box2BoxTransform


def _centers_and_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 4) boxes -> (..., 2) centres and (..., 2) widths/heights, as Detectron2 computes
    them (``x0 + 0.5 * w``)."""
    sizes = boxes[..., 2:] - boxes[..., :2]
    return boxes[..., :2] + 0.5 * sizes, sizes


def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
    """``Box2BoxTransform.get_deltas``: (N, 4) deltas (dx, dy, dw, dh) from ``src_boxes`` to
    ``target_boxes``; bit-identical, no host wait (see the module doc)."""
    w_ctr, w_size = self.weights[0], self.weights[2]  # equal in pairs: vectorize_box_transform
    src_ctr, src_size = _centers_and_sizes(src_boxes)
    target_ctr, target_size = _centers_and_sizes(target_boxes)
    d_ctr = w_ctr * (target_ctr - src_ctr) / src_size
    d_size = w_size * torch.log(target_size / src_size)
    torch._assert_async(
        (src_size[:, 0] > 0).all(), "Input boxes to Box2BoxTransform are not valid!"
    )
    return torch.cat([d_ctr, d_size], dim=1)


def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
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


def vectorize_box_transform(transform) -> None:
    """Swap the methods of one ``Box2BoxTransform`` instance whose weights are equal for x and y
    and for width and height (Detectron2's defaults: (1, 1, 1, 1) for the RPN, (10, 10, 5, 5)
    for the box head): scaled by the same Python numbers as Detectron2 does, the values are its
    own on every device (a weight tensor would divide exactly where a GPU multiplies by the
    reciprocal of a Python number). Other weights, subclasses and other transforms are left
    alone."""
    w = tuple(transform.weights) if type(transform) is Box2BoxTransform else ()
    if len(w) == 4 and w[0] == w[1] and w[2] == w[3]:
        transform.get_deltas = types.MethodType(get_deltas, transform)
        transform.apply_deltas = types.MethodType(apply_deltas, transform)


def vectorize_box_transforms(model: torch.nn.Module) -> torch.nn.Module:
    """The RPN's and the box predictor's transforms of ``model`` (where it has them) through
    :func:`get_deltas` / :func:`apply_deltas`. Returns ``model``."""
    rpn = getattr(model, "proposal_generator", None)
    predictor = getattr(getattr(model, "roi_heads", None), "box_predictor", None)
    for owner in (rpn, predictor):
        transform = getattr(owner, "box2box_transform", None)
        if transform is not None:
            vectorize_box_transform(transform)
    return model
