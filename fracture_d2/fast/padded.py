"""Whole-batch building blocks of the batched heads: per-image tensors padded into one, IoU,
matching and sampling for every image at once, without host-device synchronisations.

Detectron2 assigns and samples labels image by image, and several steps of it wait for the GPU:
boolean-mask assignments (``labels[mask] = v`` runs ``nonzero``), the ``assert torch.all(...)``
of :class:`~detectron2.modeling.matcher.Matcher`, and the ``nonzero`` + ``randperm`` of
:func:`~detectron2.modeling.sampling.subsample_labels`. The functions here give the same
matches and labels (bit for bit) and samples of the same sizes, each a uniformly random subset
(other random draws than Detectron2's), for a padded batch.
"""

from __future__ import annotations

import numpy as np
import torch
from detectron2.modeling.matcher import Matcher
from fvcore.nn import smooth_l1_loss

from .device import host_to_device


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


def roi_classes(matched_classes, match_labels, num_classes: int) -> torch.Tensor:
    """The ROI heads' training classes: the matched ground truth's class, background
    (``num_classes``) below the IoU threshold, -1 (ignored) where the matcher says so."""
    matched_classes = matched_classes.masked_fill(match_labels == 0, num_classes)
    return matched_classes.masked_fill(match_labels == -1, -1)


def masked_smooth_l1(pred, target, mask, beta: float) -> torch.Tensor:
    """Sum of the smooth-L1 loss over the rows ``mask`` selects, without indexing (which would
    wait for the device). Unselected targets may be inf (boxes of background anchors are zeros):
    they are zeroed first, so neither the loss nor its gradient sees them."""
    target = torch.where(mask[..., None], target, torch.zeros_like(target))
    return (smooth_l1_loss(pred, target, beta, reduction="none") * mask[..., None]).sum()
