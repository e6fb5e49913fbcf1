"""Training-time label assignment without host-device synchronisations.

Detectron2 assigns and samples labels image by image, and several steps of it wait for the GPU:
boolean-mask assignments (``labels[mask] = v`` runs ``nonzero``), the ``assert torch.all(...)``
of :class:`~detectron2.modeling.matcher.Matcher`, and the ``nonzero`` + ``randperm`` of
:func:`~detectron2.modeling.sampling.subsample_labels`. On a GPU each one drains the queue; at
batch 16 that is a couple of hundred waits per step (``tools/benchmark.py --profile``).

:func:`make_sync_free` swaps, on one model instance (nothing global, so a stock model in the
same process is untouched):

- both matchers for :class:`SyncFreeMatcher`: the same matches and labels, bit for bit
  (``masked_fill`` instead of mask assignment; the input check runs on the device);
- the ROI heads' proposal sampling for one with ``masked_fill`` label edits (same results and
  the same random draws);
- the RPN's anchor sampling for :func:`sample_mask`: a uniformly random subset of the same sizes
  chosen with a device-side rank instead of ``nonzero`` + ``randperm`` (the same distribution,
  other random draws).

Switched on by ``FRACTURE.FAST.SYNC_FREE_SAMPLING``. The padded, whole-batch building blocks
(:func:`pad_boxes`, :func:`pairwise_iou_batched`, :func:`match_batched`, :func:`sample_mask` on
a batch of label rows) serve :mod:`.batched_heads` (``FRACTURE.FAST.BATCHED_HEADS``).
"""

from __future__ import annotations

import types

import numpy as np
import torch
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.sampling import subsample_labels


class SyncFreeMatcher(Matcher):
    """:class:`Matcher` with the same outputs and no host-device synchronisation."""

    @classmethod
    def like(cls, matcher: Matcher) -> SyncFreeMatcher:
        new = cls.__new__(cls)
        new.__dict__.update(matcher.__dict__)
        return new

    def __call__(self, match_quality_matrix: torch.Tensor):
        q = match_quality_matrix
        assert q.dim() == 2
        if q.numel() == 0:  # shapes are known on the host: no sync
            return super().__call__(q)
        if q.device.type != "cpu":  # a GPU: checked there, no wait
            torch._assert_async(torch.all(q >= 0))
        else:
            assert torch.all(q >= 0)
        every_row = torch.ones(1, q.shape[0], dtype=torch.bool, device=q.device)
        matches, match_labels = match_batched(self, q[None], every_row)
        return matches[0], match_labels[0]


def host_to_device(values, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """A small host list (or CPU tensor) as a device tensor through pinned memory, so the copy
    does not wait for the GPU's queue (a plain ``torch.tensor(..., device="cuda")`` does)."""
    from .speed import to_device_async

    return to_device_async(torch.as_tensor(values, dtype=dtype), device)


def device_to_host(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Several device tensors on the host in one copy (one host wait instead of one each),
    back in their shapes and dtypes. They travel as float32, so integers must stay below 2**24
    (counts, indices, classes) and floating-point values must fit float32 exactly (float32,
    bfloat16, float16)."""
    packed = torch.cat([t.reshape(-1).float() for t in tensors]).cpu()
    parts = packed.split([t.numel() for t in tensors])
    return [p.view(t.shape).to(t.dtype) for p, t in zip(parts, tensors, strict=True)]


def pad_rows(rows: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (Ni, ...) tensors as one zero-padded (B, max Ni, ...) tensor and its (B, max Ni)
    validity mask. One concatenation and one scatter for the batch (``pad_sequence`` copies image
    by image); the lengths are known on the host, so nothing waits for the device."""
    lengths = [len(r) for r in rows]
    width = max(lengths, default=0)
    tail = rows[0].shape[1:] if rows else ()
    dtype = rows[0].dtype if rows else torch.float32
    if width == 0:
        return torch.zeros(len(rows), 0, *tail, dtype=dtype, device=device), torch.zeros(
            len(rows), 0, dtype=torch.bool, device=device
        )
    slots = np.concatenate([np.arange(n) + i * width for i, n in enumerate(lengths)])  # host
    slots = host_to_device(slots, device, torch.int64)
    padded = torch.zeros(len(rows) * width, *tail, dtype=dtype, device=device)
    padded.index_copy_(0, slots, torch.cat(rows))
    valid = torch.zeros(len(rows) * width, dtype=torch.bool, device=device)
    valid.index_fill_(0, slots, True)
    return padded.view(len(rows), width, *tail), valid.view(len(rows), width)


def pad_boxes(boxes: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (Ni, 4) boxes as one zero-padded (B, max Ni, 4) tensor and its (B, max Ni)
    validity mask (:func:`pad_rows`; (B, 0, 4) when no image has a box)."""
    return pad_rows([b if b.dim() == 2 else b.reshape(-1, 4) for b in boxes], device)


def pairwise_iou_batched(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of (B, M, 4) against (B, N, 4) or (N, 4) boxes, (B, M, N): the same arithmetic as
    :func:`detectron2.structures.pairwise_iou`, so each entry is bit-identical to it."""
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    a, b = a.unsqueeze(-2), b.unsqueeze(-3)  # (B, M, 1, 4), (B or 1, 1, N, 4)
    # width and height apart (not one (B, M, N, 2) tensor): half the peak memory, same products
    w = (torch.min(a[..., 2], b[..., 2]) - torch.max(a[..., 0], b[..., 0])).clamp_(min=0)
    h = (torch.min(a[..., 3], b[..., 3]) - torch.max(a[..., 1], b[..., 1])).clamp_(min=0)
    inter = w.mul_(h)
    union = area_a[..., :, None] + area_b.unsqueeze(-2) - inter
    zero = torch.zeros(1, dtype=inter.dtype, device=inter.device)
    return torch.where(inter > 0, inter / union, zero)


def match_batched(
    matcher: Matcher, quality: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``matcher`` applied to every image of a padded (B, G, N) quality matrix at once (rows
    where ``valid`` (B, G) is False are padding): (B, N) matches and int8 labels equal to
    Detectron2's per image, an image without ground truth included (all ``labels[0]``)."""
    n_img, _, n = quality.shape
    if quality.shape[1] == 0:
        matches = torch.zeros(n_img, n, dtype=torch.int64, device=quality.device)
        return matches, torch.full_like(matches, matcher.labels[0], dtype=torch.int8)
    q = quality.masked_fill(~valid[..., None], -1.0)  # padding never wins a match
    matched_vals, matches = q.max(dim=1)
    labels = torch.ones_like(matches, dtype=torch.int8)
    for label, low, high in zip(
        matcher.labels, matcher.thresholds[:-1], matcher.thresholds[1:], strict=True
    ):
        labels.masked_fill_((matched_vals >= low) & (matched_vals < high), label)
    if matcher.allow_low_quality_matches:
        best = (q == q.max(dim=2, keepdim=True).values) & valid[..., None]
        labels.masked_fill_(best.any(dim=1), 1)
    return matches, labels


def _random_k(mask: torch.Tensor, k: torch.Tensor, k_max: int) -> torch.Tensor:
    """Per row (last dimension) of ``mask``, a uniformly random subset of ``k`` (a device tensor
    shaped like ``mask`` without its last dimension, at most ``k_max``) of its True entries, as a
    mask: the ``k`` candidates with the smallest uniform keys."""
    m = min(k_max, mask.shape[-1])
    keys = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, 2.0)
    smallest = keys.topk(m, dim=-1, largest=False).indices  # ascending: candidates come first
    take = torch.arange(m, device=mask.device) < k.unsqueeze(-1)
    return torch.zeros_like(mask).scatter_(-1, smallest, take.expand_as(smallest))


def sample_mask(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~detectron2.modeling.sampling.subsample_labels` as masks (positives, negatives),
    for one label vector or a batch of them (sampled row by row along the last dimension): the
    same sizes (at most ``num_samples * positive_fraction`` positives, negatives filling up to
    ``num_samples``), each a uniformly random subset, chosen without leaving the device."""
    pos = (labels != -1) & (labels != bg_label)
    neg = labels == bg_label
    max_pos = int(num_samples * positive_fraction)
    num_pos = torch.clamp(pos.sum(-1), max=max_pos)
    num_neg = torch.minimum(neg.sum(-1), num_samples - num_pos)
    return _random_k(pos, num_pos, max_pos), _random_k(neg, num_neg, num_samples)


def rpn_subsample_labels(self, label: torch.Tensor) -> torch.Tensor:
    """RPN._subsample_labels through :func:`sample_mask` (one label vector or a batch of them):
    -1 except the sampled 1s and 0s."""
    pos, neg = sample_mask(label, self.batch_size_per_image, self.positive_fraction, 0)
    return label.fill_(-1).masked_fill_(pos, 1).masked_fill_(neg, 0)  # in place, as Detectron2's


def roi_classes(matched_classes, match_labels, num_classes: int) -> torch.Tensor:
    """The ROI heads' training classes: the matched ground truth's class, background
    (``num_classes``) below the IoU threshold, -1 (ignored) where the matcher says so."""
    matched_classes = matched_classes.masked_fill(match_labels == 0, num_classes)
    return matched_classes.masked_fill(match_labels == -1, -1)


def _roi_sample_proposals(self, matched_idxs, matched_labels, gt_classes):
    """ROIHeads._sample_proposals with ``masked_fill`` label edits (same results, same draws)."""
    if gt_classes.numel() > 0:
        gt_classes = roi_classes(gt_classes[matched_idxs], matched_labels, self.num_classes)
    else:
        gt_classes = torch.zeros_like(matched_idxs) + self.num_classes
    fg, bg = subsample_labels(
        gt_classes, self.batch_size_per_image, self.positive_fraction, self.num_classes
    )
    sampled_idxs = torch.cat([fg, bg], dim=0)
    return sampled_idxs, gt_classes[sampled_idxs]


def make_sync_free(model: torch.nn.Module) -> torch.nn.Module:
    """Swap the label assignment of ``model``'s RPN and ROI heads in place (see the module
    doc); parts a model does not have are left alone. Returns ``model``."""
    rpn = getattr(model, "proposal_generator", None)
    if rpn is not None and isinstance(getattr(rpn, "anchor_matcher", None), Matcher):
        rpn.anchor_matcher = SyncFreeMatcher.like(rpn.anchor_matcher)
        rpn._subsample_labels = types.MethodType(rpn_subsample_labels, rpn)
    roi = getattr(model, "roi_heads", None)
    if roi is not None and isinstance(getattr(roi, "proposal_matcher", None), Matcher):
        roi.proposal_matcher = SyncFreeMatcher.like(roi.proposal_matcher)
        roi._sample_proposals = types.MethodType(_roi_sample_proposals, roi)
    return model
