"""RPN and ROI-head training targets computed for the whole batch at once (the RPN half lives in
:mod:`.batched_rpn`).

Detectron2 labels anchors, selects proposals and samples RoIs image by image; every image costs
a few dozen small operations and several host-device synchronisations, so at batch 16 on a GPU
the host is the bottleneck (``tools/benchmark.py --profile``: ~300 waits per step).
:func:`make_batched` swaps, on one model instance (a stock model in the same process is
untouched):

- the RPN's anchor labelling: one padded (images, ground truth, anchors) IoU, the matcher and
  the sampling of :mod:`.sync_free` over the batch, no host wait;
- the RPN's losses: masked sums instead of boolean indexing (no host wait), the anchor counts
  logged only every ``FRACTURE.FAST.METRICS_PERIOD`` iterations;
- the proposal selection (:func:`.batched_rpn.rpn_predict_proposals`, training and inference):
  each level's top-k anchors decoded in one call (Detectron2 decodes every anchor, level by
  level), finiteness, clipping and the size filter for all images at once, then one NMS per
  image as before (two host waits per batch plus one per NMS, instead of three to four per
  image); the anchors are cached per feature-map size;
- the ROI heads' proposal labelling and sampling: the ground truth appended and everything
  padded over the batch, the samples of all images gathered at once, one host wait for the
  sample sizes and the sampled RoIs' counts per pyramid level;
- the box pooler: RoI rows and pyramid levels computed for the batch at once, the RoIs sorted by
  level once (no host wait for the sampled RoIs, whose counts came with the sample sizes, nor,
  with the matrix NMS, for the proposals in inference, whose counts came with the proposal
  counts: :class:`PoolerLevels`; one for other boxes, not one per level);
- the box predictor's losses: a masked box loss, the classification statistics logged only
  every metrics period;
- the box encoding and decoding of both (:mod:`.box_transform`): the same values in half the
  operations, and no host wait in the check of the boxes.

Matches, labels and proposals are those of Detectron2; the random samples are drawn another
(equally uniform) way. Switched on by ``FRACTURE.FAST.BATCHED_HEADS``.

:func:`use_matrix_nms` (``FRACTURE.FAST.MATRIX_NMS``) also replaces the per-image NMS of the
proposal selection and of the box predictor's inference by one :mod:`.matrix_nms` call for the
batch; in inference a box-only model's detections then come to the host in the copy that
brings their counts. With both, a training step waits for the GPU twice, inference twice per
batch (counted on the simulated GPU of ``tests/sim_cuda.py``).
"""

from __future__ import annotations

import math
import types

import numpy as np
import torch
from detectron2.layers import cat, cross_entropy
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.modeling.roi_heads import ROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import (
    FastRCNNOutputLayers,
    _log_classification_stats,
    fast_rcnn_inference,
)
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from .batched_rpn import (
    batch_rpn_inference,
    clip_boxes,
    log_now,
    masked_smooth_l1,
    read_counts,
    rpn_label_and_sample_anchors,
    rpn_losses,
)
from .box_transform import vectorize_box_transforms
from .matrix_nms import FIRST_ROUNDS, nms_keep, nms_keep_rounds
from .sync_free import (
    device_to_host,
    host_to_device,
    match_batched,
    pad_boxes,
    pad_rows,
    pairwise_iou_batched,
    roi_classes,
    sample_mask,
)

# Detectron2's objectness logit for ground truth appended to the proposals (sigmoid ~ 1)
GT_LOGIT = math.log((1.0 - 1e-10) / (1 - (1.0 - 1e-10)))


@torch.no_grad()
def _roi_label_and_sample_proposals(self, proposals, targets):
    """ROIHeads.label_and_sample_proposals for the batch: the proposals (with each image's
    ground truth appended, as Detectron2 does) padded into one tensor, labelled and sampled
    together, and the samples of all images gathered at once; one host wait for the sample
    sizes, which also brings the box pooler's counts of the samples per level (for
    :func:`_pooler_forward`). Proposals or targets with other fields than Detectron2's boxes,
    logits and classes (masks, keypoints) go through Detectron2's own code."""
    plain = all(set(p.get_fields()) == {"proposal_boxes", "objectness_logits"} for p in proposals)
    if not plain or any(set(t.get_fields()) - {"gt_boxes", "gt_classes"} for t in targets):
        return ROIHeads.label_and_sample_proposals(self, proposals, targets)
    device = proposals[0].proposal_boxes.device
    boxes, box_valid = pad_boxes([p.proposal_boxes.tensor for p in proposals], device)
    logits, _ = pad_rows([p.objectness_logits for p in proposals], device)
    gt, gt_valid = pad_boxes([t.gt_boxes.tensor for t in targets], device)
    if self.proposal_append_gt:  # after each image's proposals (padding between is invalid)
        boxes = torch.cat([boxes, gt.to(boxes.dtype)], dim=1)
        box_valid = torch.cat([box_valid, gt_valid], dim=1)
        logits = torch.cat([logits, logits.new_full(gt_valid.shape, GT_LOGIT)], dim=1)
    matches, match_labels = match_batched(
        self.proposal_matcher, pairwise_iou_batched(gt, boxes), gt_valid
    )
    if gt.shape[1] > 0:
        gt_classes = pad_rows([t.gt_classes for t in targets], device)[0].gather(1, matches)
    else:
        gt_classes = torch.zeros_like(matches)
    gt_classes = roi_classes(gt_classes, match_labels, self.num_classes)
    gt_classes = gt_classes.masked_fill(~box_valid, -1)  # padding
    fg, bg = sample_mask(
        gt_classes, self.batch_size_per_image, self.positive_fraction, self.num_classes
    )
    n_img = len(proposals)
    take = fg | bg
    # the box pooler's boxes per pyramid level read in the same copy as the sample sizes
    hint = PoolerLevels.of(self)
    if hint is not None:
        levels, per_level = hint.count(boxes, take)
    else:
        per_level = take.new_zeros(0, dtype=torch.int64)
    sizes = torch.cat([take.sum(dim=1), fg.sum(dim=1), per_level]).tolist()  # one host wait
    num_take, num_fg, level_counts = sizes[:n_img], sizes[n_img : 2 * n_img], sizes[2 * n_img :]
    # each image's taken rows first (stable: in proposal order), then all images' at once
    width = take.shape[1]
    order = torch.argsort((~take).to(torch.uint8), dim=1, stable=True)
    rows = np.concatenate([np.arange(k) + n * width for n, k in enumerate(num_take)])
    picked = order.flatten().index_select(0, host_to_device(rows, device, torch.int64))
    picked += host_to_device(np.repeat(np.arange(n_img) * width, num_take), device, torch.int64)

    def pick(t):  # (B, width, ...) -> all images' taken rows, image after image
        return t.flatten(0, 1).index_select(0, picked)

    fields = {"proposal_boxes": pick(boxes), "objectness_logits": pick(logits)}
    fields["gt_classes"] = pick(gt_classes)
    if gt.shape[1] > 0:  # each taken row's matched ground truth (Detectron2's gt_boxes)
        matched = matches + torch.arange(n_img, device=device)[:, None] * gt.shape[1]
        fields["gt_boxes"] = gt.flatten(0, 1).index_select(0, pick(matched))
    fields = {k: v.split(num_take) for k, v in fields.items()}
    sampled = []
    for n, (props, trg) in enumerate(zip(proposals, targets, strict=True)):
        res = Instances(props.image_size)
        res.proposal_boxes = Boxes(fields["proposal_boxes"][n])
        res.objectness_logits = fields["objectness_logits"][n]
        res.gt_classes = fields["gt_classes"][n]
        if len(trg) > 0:  # as Detectron2: images without ground truth get no gt_boxes
            res.gt_boxes = Boxes(fields["gt_boxes"][n])
        sampled.append(res)
    if hint is not None:  # for the pooler's call on exactly these boxes
        hint.leave(sampled, pick(levels.view(n_img, width)), level_counts)
    if log_now(self):
        storage = get_event_storage()
        storage.put_scalar("roi_head/num_fg_samples", sum(num_fg) / len(num_fg))
        storage.put_scalar("roi_head/num_bg_samples", (sum(num_take) - sum(num_fg)) / len(num_take))
    return sampled


def _box_predictor_losses(self, predictions, proposals):
    """FastRCNNOutputLayers.losses with a masked box loss (no boolean indexing) and the
    classification statistics (four host waits) logged only every metrics period."""
    if self.use_sigmoid_ce or self.box_reg_loss_type != "smooth_l1" or not proposals:
        return FastRCNNOutputLayers.losses(self, predictions, proposals)
    scores, pred_deltas = predictions
    gt_classes = cat([p.gt_classes for p in proposals], dim=0)
    if log_now(self):
        _log_classification_stats(scores, gt_classes)
    boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
    gt_boxes = cat(  # images without ground truth: any box will do, their RoIs are background
        [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0
    )
    fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
    if pred_deltas.shape[1] != 4:  # class-specific: the deltas of each RoI's own class
        cls = gt_classes.clamp(0, self.num_classes - 1)[:, None, None].expand(-1, 1, 4)
        pred_deltas = pred_deltas.view(-1, self.num_classes, 4).gather(1, cls).squeeze(1)
    target = self.box2box_transform.get_deltas(boxes, gt_boxes)
    loc = masked_smooth_l1(pred_deltas, target, fg, self.smooth_l1_beta)
    losses = {
        "loss_cls": cross_entropy(scores, gt_classes, reduction="mean"),
        "loss_box_reg": loc / max(gt_classes.numel(), 1.0),
    }
    return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}


def pooler_levels(pooler, boxes: torch.Tensor) -> torch.Tensor:
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


class PoolerLevels:
    """The box pooler's boxes per pyramid level, counted where boxes are chosen (the ROI
    sampling in training, the RPN's proposal selection in inference) and read in the copy that
    brings that step's own counts; handed to the pooler (:func:`_pooler_forward`) for its call
    on exactly those boxes, which then waits for nothing."""

    def __init__(self, pooler: ROIPooler):
        self.pooler = pooler

    @classmethod
    def of(cls, roi_heads) -> PoolerLevels | None:
        """For the ROI heads' box pooler if it is :func:`_pooler_forward` over several levels,
        else None."""
        pooler = getattr(roi_heads, "box_pooler", None)
        if not isinstance(pooler, ROIPooler) or len(pooler.level_poolers) == 1:
            return None
        patched = getattr(pooler.forward, "__func__", None) is _pooler_forward
        return cls(pooler) if patched else None

    def count(self, boxes: torch.Tensor, chosen: torch.Tensor):
        """(B, N, 4) padded boxes and (B, N) booleans -> the (B * N,) levels of all boxes and
        the (levels + 1,) counts of the chosen ones (the last: boxes pooled at no level)."""
        levels = pooler_levels(self.pooler, boxes.flatten(0, 1))
        counts = levels.new_zeros(len(self.pooler.level_poolers) + 1)
        return levels, counts.scatter_add_(0, levels, chosen.flatten().to(levels.dtype))

    def leave(self, instances: list, levels: torch.Tensor, counts: list[int]) -> None:
        """For the pooler's next call, if it pools the ``proposal_boxes`` of ``instances``
        (the same tensors): their ``levels`` (concatenated) and the host ``counts``."""
        boxes = [x.proposal_boxes.tensor for x in instances]
        self.pooler._known_levels = (boxes, levels, counts)


def _pooler_forward(self, x, box_lists):
    """ROIPooler.forward with the RoI rows and levels computed for the batch at once: the boxes
    sorted by level once, each level's slice pooled, the same values put back. The boxes per
    level take one host wait (Detectron2: one per level), or none when the call pools the very
    boxes the batched ROI sampling just returned: it read their levels' counts with its
    sample sizes and left them here (``_known_levels``: those box tensors, their levels and the
    counts; used once)."""
    known = self.__dict__.pop("_known_levels", None)
    if len(self.level_poolers) == 1 or len(box_lists) == 0:
        return ROIPooler.forward(self, x, box_lists)
    flat = torch.cat([b.tensor for b in box_lists])
    index = np.repeat(np.arange(len(box_lists)), [len(b) for b in box_lists])  # on the host
    index = host_to_device(index, flat.device, flat.dtype)
    boxes = torch.cat([index[:, None], flat], dim=1)  # convert_boxes_to_pooler_format's rows
    if known is not None and _same_tensors(known[0], [b.tensor for b in box_lists]):
        _, levels, counts = known
    else:
        levels = pooler_levels(self, flat)
        # per-level counts by a scatter: torch.bincount on a GPU reads the input's min and max
        # to the host first (two more waits)
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


def _same_tensors(a: list, b: list) -> bool:
    """Whether two lists hold the same tensor objects (not equal values: no device read)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def fast_rcnn_inference_batched(
    boxes,
    scores,
    image_shapes,
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
    to_host: bool = False,
):
    """:func:`detectron2.modeling.roi_heads.fast_rcnn.fast_rcnn_inference` for the whole batch:
    the RoIs of all images padded into one tensor, clipped, thresholded and suppressed per image
    and class by one matrix NMS, then the ``topk_per_image`` best per image. One host wait for
    the detection counts and the NMS's convergence flag after its first rounds (more only where
    it had not converged); the same detections as Detectron2's, ordered by descending score.
    The kept indices index the RoIs given (Detectron2's count only the rows left after dropping
    non-finite ones). ``to_host``: the detections come to the host in the copy that brings the
    counts, and the results are host tensors, so Detectron2's post-processing (per image a
    finiteness check and boolean indexing: four more waits on a GPU) waits for nothing."""
    lengths = [len(s) for s in scores]
    if max(lengths, default=0) == 0:
        results, kept = fast_rcnn_inference(
            boxes, scores, image_shapes, score_thresh, nms_thresh, topk_per_image
        )
        if to_host:  # empty: nothing to wait for
            results, kept = [r.to("cpu") for r in results], [k.cpu() for k in kept]
        return results, kept
    device = scores[0].device
    b, valid = pad_rows(list(boxes), device)  # (B, R, C' * 4)
    s, _ = pad_rows(list(scores), device)  # (B, R, C + 1)
    hw = host_to_device(image_shapes, device, b.dtype)
    args = (b, s, valid, hw, score_thresh, nms_thresh, topk_per_image)
    read = _read_detections if to_host else _read_detection_counts
    det = detections_padded(*args, rounds=FIRST_ROUNDS)
    counts, converged, det = read(det)  # one host wait
    if not converged:  # rare (long chains of suppressions): the NMS with checked rounds
        counts, _, det = read(detections_padded(*args))
    det_boxes, det_scores, det_classes, det_rois = det[:4]
    results, kept_rois = [], []
    for n, image_shape in enumerate(image_shapes):
        res = Instances(image_shape)
        res.pred_boxes = Boxes(det_boxes[n, : counts[n]])
        res.scores = det_scores[n, : counts[n]]
        res.pred_classes = det_classes[n, : counts[n]]
        results.append(res)
        kept_rois.append(det_rois[n, : counts[n]])
    return results, kept_rois


def _read_detection_counts(det):
    counts, converged = read_counts(det[4].sum(dim=1), converged=det[5])
    return counts, converged, det


def _read_detections(det):
    """The counts, the convergence flag and (boxes, scores, classes, RoI indices) of
    :func:`detections_padded`'s output on the host, in one copy."""
    boxes, scores, classes, rois, valid, converged = det
    flags = [] if converged is None else [converged]
    counts, *host = device_to_host(valid.sum(dim=1), boxes, scores, classes, rois, *flags)
    return counts.tolist(), converged is None or bool(host[4]), tuple(host[:4])


def detections_padded(
    boxes, scores, valid, hw, score_thresh: float, nms_thresh: float, topk: int, rounds=None
):
    """The detections of padded RoIs: (B, R, C' * 4) boxes, (B, R, C + 1) class probabilities,
    (B, R) validity, (B, 2) image heights and widths -> per image the ``topk`` best boxes that
    pass the score threshold and the NMS of their image and class, by descending score:
    (B, D, 4) boxes, (B, D) scores, classes and RoI indices, (B, D) validity (the detections
    come first) and the NMS's convergence flag (None: checked on the host; ``rounds``: see
    :func:`.matrix_nms.nms_keep_rounds`)."""
    n_img, rows = boxes.shape[:2]
    valid = valid & torch.isfinite(boxes).all(dim=2) & torch.isfinite(scores).all(dim=2)
    s = scores[..., :-1]
    classes = s.shape[2]
    b = torch.where(valid[..., None], boxes, torch.zeros_like(boxes)).view(n_img, rows, -1, 4)
    b = clip_boxes(b, hw).expand(-1, -1, classes, -1)  # class-agnostic: one box for every class
    candidate = valid[..., None] & (s > score_thresh)  # (B, R, C)
    args = (  # groups: (image, class)
        b.transpose(1, 2).flatten(0, 1),
        s.transpose(1, 2).flatten(0, 1),
        candidate.transpose(1, 2).flatten(0, 1),
        nms_thresh,
    )
    if rounds is None:
        kept, converged = nms_keep(*args), None
    else:
        kept, converged = nms_keep_rounds(*args, rounds)
    kept = kept.view(n_img, classes, rows).transpose(1, 2).reshape(n_img, -1)  # (r, c) order
    ranked = s.reshape(n_img, -1).masked_fill(~kept, float("-inf"))
    limit = ranked.shape[1] if topk < 0 else min(topk, ranked.shape[1])
    top = ranked.topk(limit, dim=1)
    det_boxes = b.reshape(n_img, -1, 4).gather(1, top.indices[..., None].expand(-1, -1, 4))
    det_valid = top.values > float("-inf")
    return (
        det_boxes,
        top.values,
        top.indices % classes,
        top.indices // classes,
        det_valid,
        converged,
    )


def _box_predictor_inference(self, predictions, proposals):
    """FastRCNNOutputLayers.inference through :func:`fast_rcnn_inference_batched`."""
    return fast_rcnn_inference_batched(
        self.predict_boxes(predictions, proposals),
        self.predict_probs(predictions, proposals),
        [x.image_size for x in proposals],
        self.test_score_thresh,
        self.test_nms_thresh,
        self.test_topk_per_image,
        to_host=getattr(self, "_results_to_host", False),
    )


def use_matrix_nms(model: torch.nn.Module) -> torch.nn.Module:
    """``FRACTURE.FAST.MATRIX_NMS``: the RPN's proposal selection (:func:`.batched_rpn.
    select_proposals`) and the box predictor's inference (:func:`fast_rcnn_inference_batched`)
    of ``model`` run every image's NMS at once (:mod:`.matrix_nms`). Returns ``model``."""
    rpn = getattr(model, "proposal_generator", None)
    if isinstance(rpn, RPN):
        batch_rpn_inference(rpn, matrix_nms=True)
    roi = getattr(model, "roi_heads", None)
    predictor = getattr(roi, "box_predictor", None)
    if isinstance(predictor, FastRCNNOutputLayers) and not predictor.use_sigmoid_ce:
        predictor.inference = types.MethodType(_box_predictor_inference, predictor)
        # box-only models: detections handed over on the host (mask and keypoint heads would
        # need them on the device)
        predictor._results_to_host = not (
            getattr(roi, "mask_on", False) or getattr(roi, "keypoint_on", False)
        )
    return model


def make_batched(model: torch.nn.Module, metrics_period: int = 1) -> torch.nn.Module:
    """Swap the RPN's and ROI heads' target and proposal code of ``model`` in place (see the
    module doc); parts a model does not have are left alone. Returns ``model``."""
    vectorize_box_transforms(model)
    rpn = getattr(model, "proposal_generator", None)
    if isinstance(rpn, RPN):
        rpn._metrics_period = max(1, metrics_period)
        rpn.label_and_sample_anchors = types.MethodType(rpn_label_and_sample_anchors, rpn)
        rpn.losses = types.MethodType(rpn_losses, rpn)
        batch_rpn_inference(rpn)
    roi = getattr(model, "roi_heads", None)
    if isinstance(roi, ROIHeads):
        roi._metrics_period = max(1, metrics_period)
        roi.label_and_sample_proposals = types.MethodType(_roi_label_and_sample_proposals, roi)
        pooler = getattr(roi, "box_pooler", None)
        if isinstance(pooler, ROIPooler):
            pooler.forward = types.MethodType(_pooler_forward, pooler)
        if isinstance(rpn, RPN):  # inference: the proposal read brings the boxes per level
            rpn.__dict__["_pooler_levels"] = PoolerLevels.of(roi)  # not a submodule
        predictor = getattr(roi, "box_predictor", None)
        if isinstance(predictor, FastRCNNOutputLayers):
            predictor._metrics_period = roi._metrics_period
            predictor.losses = types.MethodType(_box_predictor_losses, predictor)
    return model
