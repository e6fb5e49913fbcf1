"""The RPN's training targets, losses and proposal selection for the whole batch at once (the
RPN half of :mod:`.batched_heads`, ``FRACTURE.FAST.BATCHED_HEADS``)."""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from detectron2.layers import batched_nms, cat
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage
from fvcore.nn import smooth_l1_loss

from .matrix_nms import FIRST_ROUNDS, MatrixNMS, nms_keep, nms_keep_rounds
from .sync_free import (
    host_to_device,
    match_batched,
    pad_boxes,
    pairwise_iou_batched,
    rpn_subsample_labels,
)


def log_now(module) -> bool:
    """Whether this iteration writes metrics (``FRACTURE.FAST.METRICS_PERIOD``)."""
    return (get_event_storage().iter + 1) % module._metrics_period == 0


def masked_smooth_l1(pred, target, mask, beta: float) -> torch.Tensor:
    """Sum of the smooth-L1 loss over the rows ``mask`` selects, without indexing (which would
    wait for the device). Unselected targets may be inf (boxes of background anchors are zeros):
    they are zeroed first, so neither the loss nor its gradient sees them."""
    target = torch.where(mask[..., None], target, torch.zeros_like(target))
    return (smooth_l1_loss(pred, target, beta, reduction="none") * mask[..., None]).sum()


@torch.no_grad()
def rpn_label_and_sample_anchors(self, anchors, gt_instances):
    """RPN.label_and_sample_anchors for the batch: (B, R) int8 labels, (B, R, 4) boxes."""
    if self.anchor_boundary_thresh >= 0:  # legacy option, off in Detectron2: stock path
        return RPN.label_and_sample_anchors(self, anchors, gt_instances)
    anchors = Boxes.cat(anchors).tensor
    gt, valid = pad_boxes([x.gt_boxes.tensor for x in gt_instances], anchors.device)
    matches, labels = match_batched(self.anchor_matcher, pairwise_iou_batched(gt, anchors), valid)
    labels = rpn_subsample_labels(self, labels)
    if gt.shape[1] == 0:
        matched = anchors.new_zeros(len(gt_instances), *anchors.shape)
    else:  # images without ground truth gather padding zeros, as Detectron2's zeros
        matched = gt.gather(1, matches[..., None].expand(-1, -1, 4))
    return labels, matched


def rpn_losses(self, anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes):
    """RPN.losses with masked sums (no boolean indexing, so no host wait)."""
    if self.box_reg_loss_type != "smooth_l1":
        return RPN.losses(
            self, anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes
        )
    gt_labels = torch.stack(list(gt_labels)) if isinstance(gt_labels, list) else gt_labels
    gt_boxes = torch.stack(list(gt_boxes)) if isinstance(gt_boxes, list) else gt_boxes
    num_images = gt_labels.shape[0]
    pos, valid = gt_labels == 1, gt_labels >= 0
    if log_now(self):
        storage = get_event_storage()
        counts = torch.stack([pos.sum(), (gt_labels == 0).sum()]).tolist()
        storage.put_scalar("rpn/num_pos_anchors", counts[0] / num_images)
        storage.put_scalar("rpn/num_neg_anchors", counts[1] / num_images)

    anchors = Boxes.cat(anchors).tensor
    deltas = self.box2box_transform.get_deltas(
        anchors.repeat(num_images, 1), gt_boxes.reshape(-1, 4)
    ).view(gt_boxes.shape)
    localization_loss = masked_smooth_l1(
        cat(pred_anchor_deltas, dim=1), deltas, pos, self.smooth_l1_beta
    )
    objectness_loss = F.binary_cross_entropy_with_logits(
        cat(pred_objectness_logits, dim=1),
        gt_labels.clamp(min=0).to(torch.float32),
        weight=valid.to(torch.float32),
        reduction="sum",
    )
    normalizer = self.batch_size_per_image * num_images
    losses = {
        "loss_rpn_cls": objectness_loss / normalizer,
        "loss_rpn_loc": localization_loss / normalizer,
    }
    return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}


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
    boxes = self.box2box_transform.apply_deltas(
        deltas.reshape(-1, deltas.shape[-1]), cat(picked_anchors, dim=1).reshape(-1, 4)
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
    if type(generator) is DefaultAnchorGenerator:
        anchors = device_anchors(generator, features)
    else:
        anchors = type(generator).forward(generator, features)
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
    pooler_levels=None,
):
    """The rest of ``find_top_rpn_proposals`` for (B, N, 4) candidate boxes and (B, N) scores
    in blocks of ``level_sizes`` per pyramid level: finiteness, clipping and the size filter for
    all images at once. Boxes it drops (non-finite, empty) become zero boxes scored -inf
    instead: they suppress nothing and sort last, so NMS keeps the same boxes, and they are cut
    off the end of each image's result. ``matrix_nms``: the NMS of every image and level at
    once (:func:`.matrix_nms.nms_keep`) instead of one per image; then ``pooler_levels`` (a
    :class:`.batched_heads.PoolerLevels`) gets the proposals' boxes per pooler level in the copy
    that brings their counts."""
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
            pooler_levels,
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
    boxes,
    scores,
    valid,
    level_sizes,
    image_sizes,
    nms_thresh,
    post_topk,
    all_finite=None,
    pooler_levels=None,
):
    """The end of :func:`select_proposals` with one NMS over all images and levels: the NMS's
    convergence flag after :data:`FIRST_ROUNDS` rounds, the divergence flag ``all_finite``, the
    proposal counts (and with ``pooler_levels`` the proposals per pooler level) read in one
    host wait; more rounds (and waits) only where the NMS had not converged."""
    n_img = len(image_sizes)
    gb, gs, gv = level_groups(boxes, scores, valid, level_sizes)
    nms = MatrixNMS(gb.flatten(0, 1), gs.flatten(0, 1), gv.flatten(0, 1), nms_thresh)
    converged = nms.rounds(FIRST_ROUNDS)
    for last in (False, True):
        if last:  # a longer chain of suppressions: finish, then read again
            nms.finish()
        boxes, scores, valid = _top_of_kept(gb, gs, nms.mask(), post_topk)
        counts = valid.sum(dim=1)
        if pooler_levels is not None:
            levels, per_level = pooler_levels.count(boxes, valid)
            counts = torch.cat([counts, per_level])
        counts, converged = read_counts(counts, all_finite, None if last else converged)
        if converged:
            break
    counts, level_counts = counts[:n_img], counts[n_img:]
    results = []
    for n, image_size in enumerate(image_sizes):
        res = Instances(image_size)
        res.proposal_boxes = Boxes(boxes[n, : counts[n]])
        res.objectness_logits = scores[n, : counts[n]]
        results.append(res)
    if pooler_levels is not None:
        levels = levels.view(n_img, -1)
        kept_levels = torch.cat([levels[n, : counts[n]] for n in range(n_img)])
        pooler_levels.leave(results, kept_levels, level_counts)
    return results


def rpn_predict_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes):
    """RPN.predict_proposals: :func:`top_decoded_proposals`, then :func:`select_proposals`."""
    with torch.no_grad():
        boxes, scores, level_sizes = top_decoded_proposals(
            self,
            anchors,
            pred_objectness_logits,
            pred_anchor_deltas,
            self.pre_nms_topk[self.training],
        )
        return select_proposals(
            boxes,
            scores,
            level_sizes,
            image_sizes,
            self.nms_thresh,
            self.post_nms_topk[self.training],
            self.min_box_size,
            self.training,
            getattr(self, "_matrix_nms", False),
            None if self.training else getattr(self, "_pooler_levels", None),
        )


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


ANCHOR_CACHE_SIZE = 32  # distinct feature-map sizes remembered (multi-scale training: a few)


def cached_anchors(self, features):
    """``DefaultAnchorGenerator.forward`` (as :func:`device_anchors`) remembered per feature-map
    sizes and device: the anchors depend on nothing else, and rebuilding them costs ~50 small
    operations per batch (a GPU kernel launch each)."""
    key = (
        tuple(tuple(f.shape[-2:]) for f in features),
        features[0].device,
        torch.is_inference_mode_enabled(),  # inference tensors must not reach training
    )
    cache = self.__dict__.setdefault("_anchor_cache", {})
    if key not in cache:
        if len(cache) >= ANCHOR_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = device_anchors(self, features)
    return cache[key]


def batch_rpn_inference(rpn: RPN, matrix_nms: bool | None = None) -> None:
    """Swap ``rpn``'s proposal selection for :func:`rpn_predict_proposals` and its anchor
    generator's forward for :func:`cached_anchors` (a plain DefaultAnchorGenerator only);
    ``matrix_nms``: set whether the NMS is :mod:`.matrix_nms` (None: leave it)."""
    rpn.predict_proposals = types.MethodType(rpn_predict_proposals, rpn)
    if matrix_nms is not None:
        rpn._matrix_nms = matrix_nms
    generator = rpn.anchor_generator
    if type(generator) is DefaultAnchorGenerator:
        generator.forward = types.MethodType(cached_anchors, generator)
