"""The RPN's proposal selection for the whole batch at once: candidates (each level's top-k
anchors decoded, clipped and filtered for all images together), then the NMS per image and
level (torchvision's, one call per image) or for every image and level at once
(:mod:`.matrix_nms`); and the same with fixed shapes for the static inference path."""

from __future__ import annotations

import torch
from detectron2.layers import batched_nms, cat
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.structures import Boxes, Instances

from .anchors import CachedAnchorGenerator, device_anchors
from .box_transform import decode
from .device import host_to_device
from .matrix_nms import FIRST_ROUNDS, MatrixNMS, nms_keep, nms_keep_rounds


def top_decoded_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, topk: int):
    """Each level's ``topk`` best anchors per image by objectness, decoded: (B, N, 4) boxes,
    (B, N) scores and the level sizes. Detectron2 decodes every anchor and then takes the top
    k; decoding is row by row, so decoding only those gives the same boxes, here with one
    ``apply_deltas`` for all levels instead of one per level."""
    batch = torch.arange(pred_anchor_deltas[0].shape[0], device=pred_anchor_deltas[0].device)
    picked_anchors, picked_deltas, scores = [], [], []
    for anchors_i, logits_i, deltas_i in zip(
        anchors, pred_objectness_logits, pred_anchor_deltas, strict=True
    ):
        top_scores, top_idx = logits_i.topk(min(logits_i.shape[1], topk), dim=1)
        picked_anchors.append(anchors_i.tensor[top_idx])
        picked_deltas.append(deltas_i[batch[:, None], top_idx])
        scores.append(top_scores)
    deltas = cat(picked_deltas, dim=1)
    boxes = decode(
        self.box2box_transform,
        deltas.reshape(-1, deltas.shape[-1]),
        cat(picked_anchors, dim=1).reshape(-1, 4),
    )
    return boxes.view(deltas.shape), cat(scores, dim=1), [x.shape[1] for x in scores]


def rpn_candidates(rpn, features: list, hw: torch.Tensor, topk: int):
    """The RPN's proposal candidates before its NMS, for the whole batch and without a host
    wait: each level's ``topk`` best anchors per image (:func:`top_decoded_proposals`), clipped
    to the (B, 2) image heights and widths ``hw``, the non-finite and too small ones invalid
    (:func:`clip_and_filter`). Returns (B, N, 4) boxes, (B, N) scores, (B, N) validity and the
    level sizes. The anchors are computed, not cached (an instance's cache is not traced by
    ``torch.compile``), on the device (:func:`device_anchors`)."""
    generator = rpn.anchor_generator
    if type(generator) in (DefaultAnchorGenerator, CachedAnchorGenerator):
        anchors = device_anchors(generator, features)
    else:
        anchors = generator(features)
    logits, deltas = rpn.rpn_head(features)
    logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]
    box_dim = generator.box_dim
    deltas = [
        x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1])
        .permute(0, 3, 4, 1, 2)
        .flatten(1, -2)
        for x in deltas
    ]
    boxes, scores, level_sizes = top_decoded_proposals(rpn, anchors, logits, deltas, topk)
    finite = torch.isfinite(boxes).all(dim=2) & torch.isfinite(scores)
    boxes, scores, valid = clip_and_filter(boxes, scores, finite, hw, rpn.min_box_size)
    return boxes, scores, valid, level_sizes


def select_proposals(
    boxes,
    scores,
    level_sizes: list[int],
    image_sizes,
    nms_thresh: float,
    post_nms_topk: int,
    min_box_size: float,
    training: bool,
    matrix_nms: bool = False,
):
    """The rest of ``find_top_rpn_proposals`` for (B, N, 4) candidate boxes and (B, N) scores
    in blocks of ``level_sizes`` per pyramid level: finiteness, clipping and the size filter for
    all images at once. Boxes it drops (non-finite, empty) become zero boxes scored -inf
    instead: they suppress nothing and sort last, so NMS keeps the same boxes, and they are cut
    off the end of each image's result. ``matrix_nms``: the NMS of every image and level at
    once (:mod:`.matrix_nms`) instead of one per image."""
    device = boxes.device
    finite = torch.isfinite(boxes).all(dim=2) & torch.isfinite(scores)
    hw = host_to_device(image_sizes, device, boxes.dtype)  # (B, 2) as (h, w)
    boxes, scores, keep = clip_and_filter(boxes, scores, finite, hw, min_box_size)
    # Detectron2 stops a diverged training run here; the flag is read with the counts below
    # (one host wait instead of two)
    all_finite = finite.all().view(1) if training else None
    if matrix_nms:
        return _top_after_matrix_nms(
            boxes,
            scores,
            keep,
            level_sizes,
            image_sizes,
            nms_thresh,
            post_nms_topk,
            all_finite,
        )
    dropped, _ = read_counts((~keep).sum(dim=1), all_finite)
    levels = cat(
        [torch.full((k,), i, dtype=torch.int64, device=device) for i, k in enumerate(level_sizes)]
    )
    results = []
    for n, image_size in enumerate(image_sizes):
        kept = batched_nms(boxes[n], scores[n], levels, nms_thresh)
        kept = kept[: min(len(kept) - dropped[n], post_nms_topk)]  # dropped boxes are last
        res = Instances(image_size)
        res.proposal_boxes = Boxes(boxes[n][kept])
        res.objectness_logits = scores[n][kept]
        results.append(res)
    return results


def read_counts(counts, all_finite=None, converged=None) -> tuple[list[int], bool]:
    """(B,) ``counts`` and the 0-d or 1-element bool flags on the host in one copy (one host
    wait). Raises FloatingPointError, as Detectron2 does, if ``all_finite`` (in training: the
    proposal candidates were finite; None: not checked) is False. Returns the counts and whether
    ``converged`` (True if None)."""
    flags = [x.view(1).to(counts.dtype) for x in (all_finite, converged) if x is not None]
    values = torch.cat([counts, *flags]).tolist()
    n = len(counts)
    rest = iter(values[n:])
    if all_finite is not None and not next(rest):
        raise FloatingPointError(
            "Predicted boxes or scores contain Inf/NaN. Training has diverged."
        )
    return values[:n], converged is None or bool(next(rest))


def clip_boxes(boxes: torch.Tensor, hw: torch.Tensor) -> torch.Tensor:
    """(B, ..., 4) boxes clipped to each image's (B, 2) height and width (``Boxes.clip``)."""
    wh = hw.flip(-1).view(hw.shape[0], *([1] * (boxes.dim() - 2)), 2)
    return torch.cat(
        [boxes[..., :2].clamp(min=0).minimum(wh), boxes[..., 2:].clamp(min=0).minimum(wh)], dim=-1
    )


def clip_and_filter(boxes, scores, finite, hw, min_box_size: float):
    """Proposal candidates clipped to the images, the empty and non-finite ones (``finite``
    False) turned into zero boxes scored -inf: (boxes, scores, valid)."""
    boxes = clip_boxes(boxes, hw)
    size = boxes[..., 2:] - boxes[..., :2]
    keep = finite & (size > min_box_size).all(dim=-1)
    boxes = torch.where(keep[..., None], boxes, torch.zeros_like(boxes))
    return boxes, scores.masked_fill(~keep, float("-inf")), keep


def _pad_dim1(x: torch.Tensor, width: int) -> torch.Tensor:
    """``x`` zero-padded (False for booleans) along dimension 1 to ``width``."""
    if x.shape[1] == width:
        return x
    pad = x.new_zeros((x.shape[0], width - x.shape[1], *x.shape[2:]))
    return torch.cat([x, pad], dim=1)


def level_groups(boxes, scores, valid, level_sizes):
    """(B, N, ...) candidates in level blocks of ``level_sizes`` -> (B, L, width, ...) (the
    padding is invalid)."""
    width = max(level_sizes)
    return (
        torch.stack([_pad_dim1(x, width) for x in torch.split(t, level_sizes, dim=1)], dim=1)
        for t in (boxes, scores, valid)
    )


def _top_of_kept(gb, gs, kept, post_topk: int):
    """The ``post_topk`` best kept boxes per image of level groups (B, L, width, ...):
    (B, P, 4) boxes, (B, P) scores by descending score, (B, P) validity."""
    n_img = gb.shape[0]
    ranked = gs.view(n_img, -1).masked_fill(~kept.view(n_img, -1), float("-inf"))
    top = ranked.topk(min(post_topk, ranked.shape[1]), dim=1)
    top_boxes = gb.view(n_img, -1, 4).gather(1, top.indices[..., None].expand(-1, -1, 4))
    return top_boxes, top.values, top.values > float("-inf")


def top_kept_proposals(
    boxes, scores, valid, level_sizes, nms_thresh: float, post_topk: int, rounds=None
):
    """Per image the ``post_topk`` best boxes that survive the NMS of their image and level,
    padded: (B, N) candidates in level blocks of ``level_sizes`` -> (B, P, 4) boxes and (B, P)
    scores by descending score (as Detectron2's ``batched_nms`` orders them), (B, P) validity
    (the kept ones come first) and the NMS's convergence flag (None: checked on the host,
    ``rounds``: that many rounds, :func:`.matrix_nms.nms_keep_rounds`)."""
    gb, gs, gv = level_groups(boxes, scores, valid, level_sizes)
    args = (gb.flatten(0, 1), gs.flatten(0, 1), gv.flatten(0, 1), nms_thresh)
    if rounds is None:
        kept, converged = nms_keep(*args), None
    else:
        kept, converged = nms_keep_rounds(*args, rounds)
    return (*_top_of_kept(gb, gs, kept, post_topk), converged)


def _top_after_matrix_nms(
    boxes, scores, valid, level_sizes, image_sizes, nms_thresh, post_topk, all_finite=None
):
    """The end of :func:`select_proposals` with one NMS over all images and levels: the NMS's
    convergence flag after :data:`FIRST_ROUNDS` rounds, the divergence flag ``all_finite`` and
    the proposal counts read in one host wait; more rounds (and waits) only where the NMS had
    not converged."""
    gb, gs, gv = level_groups(boxes, scores, valid, level_sizes)
    nms = MatrixNMS(gb.flatten(0, 1), gs.flatten(0, 1), gv.flatten(0, 1), nms_thresh)
    converged = nms.rounds(FIRST_ROUNDS)
    for last in (False, True):
        if last:  # a longer chain of suppressions: finish, then read again
            nms.finish()
        boxes, scores, valid = _top_of_kept(gb, gs, nms.mask(), post_topk)
        counts, converged = read_counts(valid.sum(dim=1), all_finite, None if last else converged)
        if converged:
            break
    results = []
    for n, image_size in enumerate(image_sizes):
        res = Instances(image_size)
        res.proposal_boxes = Boxes(boxes[n, : counts[n]])
        res.objectness_logits = scores[n, : counts[n]]
        results.append(res)
    return results
