"""``BatchedROIPooler``: Detectron2's ``ROIPooler`` with the RoIs of all images assigned to
pyramid levels at once and sorted by level once (the batched ROI heads' box pooler)."""

from __future__ import annotations

import numpy as np
import torch
from detectron2.modeling.poolers import ROIPooler

from .device import host_to_device
from .policy import switch_on


def pooler_levels(pooler: ROIPooler, boxes: torch.Tensor) -> torch.Tensor:
    """:func:`detectron2.modeling.poolers.assign_boxes_to_levels` for all images' (M, 4) boxes
    at once (Detectron2 computes the areas image by image): the same arithmetic, so the same
    levels (offsets from ``pooler.min_level``; ``len(pooler.level_poolers)`` for boxes that
    Detectron2 pools at no level)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # Boxes.area
    level = torch.floor(
        pooler.canonical_level + torch.log2(torch.sqrt(area) / pooler.canonical_box_size + 1e-8)
    )
    level = torch.clamp(level, min=pooler.min_level, max=pooler.max_level)
    # a box of negative area (one side inverted; the RPN never proposes one) has no level in
    # Detectron2 either, which leaves its features zero: here the extra level len(level_poolers)
    level = level.nan_to_num(nan=pooler.max_level + 1)
    return level.to(torch.int64) - pooler.min_level


def _same_tensors(a: list, b: list) -> bool:
    """Whether two lists hold the same tensor objects (not equal values: no device read)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class BatchedROIPooler(ROIPooler):
    """``ROIPooler`` whose forward, with ``FRACTURE.FAST.BATCHED_HEADS`` on, computes the RoI
    rows and levels for the batch at once, sorts the boxes by level once, pools each level's
    slice and puts the same values back. The boxes per level cost one host wait (Detectron2:
    one per level), or none when the call pools the very boxes the batched ROI sampling just
    chose: it counted them per level in the copy that brought its sample sizes
    (:meth:`count`) and left the counts here (:meth:`leave`; used once)."""

    def __init__(self, *args, batched=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.batched = batched
        self._known_levels = None

    def count(self, boxes: torch.Tensor, chosen: torch.Tensor):
        """(B, N, 4) padded boxes and (B, N) booleans -> the (B * N,) levels of all boxes and
        the (levels + 1,) counts of the chosen ones (the last: boxes pooled at no level)."""
        levels = pooler_levels(self, boxes.flatten(0, 1))
        counts = levels.new_zeros(len(self.level_poolers) + 1)
        return levels, counts.scatter_add_(0, levels, chosen.flatten().to(levels.dtype))

    def leave(self, instances: list, levels: torch.Tensor, counts: list[int]) -> None:
        """For the next call, if it pools the ``proposal_boxes`` of ``instances`` (the same
        tensors): their ``levels`` (concatenated) and the host ``counts``."""
        self._known_levels = ([x.proposal_boxes.tensor for x in instances], levels, counts)

    def forward(self, x, box_lists):
        known, self._known_levels = self._known_levels, None
        batched = switch_on("BATCHED_HEADS", self.batched, x[0].device, self.training)
        if not batched or len(self.level_poolers) == 1 or len(box_lists) == 0:
            return super().forward(x, box_lists)
        flat = torch.cat([b.tensor for b in box_lists])
        index = np.repeat(np.arange(len(box_lists)), [len(b) for b in box_lists])  # on the host
        index = host_to_device(index, flat.device, flat.dtype)
        boxes = torch.cat([index[:, None], flat], dim=1)  # convert_boxes_to_pooler_format's rows
        if known is not None and _same_tensors(known[0], [b.tensor for b in box_lists]):
            _, levels, counts = known
        else:
            levels = pooler_levels(self, flat)
            # per-level counts by a scatter: torch.bincount on a GPU reads the input's min and
            # max to the host first (two more waits)
            counts = levels.new_zeros(len(self.level_poolers) + 1)
            counts = counts.scatter_add_(0, levels, torch.ones_like(levels)).tolist()
        order = torch.argsort(levels, stable=True)
        size = self.output_size
        output = x[0].new_zeros((len(boxes), x[0].shape[1], size[0], size[1]))
        start = 0
        # the last count: boxes at no level, sorted last and left zero
        for feature, pooler, count in zip(x, self.level_poolers, counts[:-1], strict=True):
            inds = order[start : start + count]
            start += count
            output.index_put_((inds,), pooler(feature, boxes[inds]))
        return output
