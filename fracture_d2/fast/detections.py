"""Detections of the box predictor for the whole batch at once, and
``BatchedFastRCNNOutputLayers``, the batched ROI heads' box predictor.

Detectron2 thresholds, suppresses and ranks each image's RoIs on its own (one torchvision NMS
call and several host waits per image). :func:`fast_rcnn_inference_batched` pads the RoIs of all
images into one tensor and runs one :mod:`.matrix_nms` over every image and class: the same
detections, one host wait for their counts.
"""

from __future__ import annotations

import torch
from detectron2.layers import cat, cross_entropy
from detectron2.modeling.roi_heads.fast_rcnn import (
    FastRCNNOutputLayers,
    _log_classification_stats,
    fast_rcnn_inference,
)
from detectron2.structures import Boxes, Instances

from .box_transform import encode
from .device import device_to_host, host_to_device
from .matrix_nms import FIRST_ROUNDS, nms_keep, nms_keep_rounds
from .padded import pad_rows
from .policy import switch_on
from .proposals import clip_boxes, read_counts
from .rpn import log_now, masked_smooth_l1


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


class BatchedFastRCNNOutputLayers(FastRCNNOutputLayers):
    """``FastRCNNOutputLayers`` (same parameters) whose losses, with
    ``FRACTURE.FAST.BATCHED_HEADS`` on, use a masked box loss (no boolean indexing) and log the
    classification statistics (four host waits) every ``metrics_period`` iterations, and whose
    inference, with ``FRACTURE.FAST.MATRIX_NMS`` on, is :func:`fast_rcnn_inference_batched`
    (box-only models get their detections on the host in the copy that brings their counts).

    Args:
        batched, matrix_nms: the switches (None: on where :mod:`.policy` says).
        metrics_period: log the statistics every this many iterations.
        results_to_host: hand the detections over on the host (False for mask/keypoint
            models, whose heads need them on the device).
        *args, **kwargs: ``FastRCNNOutputLayers``' arguments (``cfg, input_shape`` works too).
    """

    def __init__(
        self,
        *args,
        batched=None,
        matrix_nms=None,
        metrics_period: int = 1,
        results_to_host: bool = True,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.batched, self.matrix_nms = batched, matrix_nms
        self.metrics_period, self.results_to_host = metrics_period, results_to_host

    def losses(self, predictions, proposals):
        scores, pred_deltas = predictions
        batched = switch_on("BATCHED_HEADS", self.batched, scores.device, self.training)
        plain = not self.use_sigmoid_ce and self.box_reg_loss_type == "smooth_l1"
        if not (batched and plain and proposals):
            return super().losses(predictions, proposals)
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        if log_now(self):
            _log_classification_stats(scores, gt_classes)
        boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        gt_boxes = cat(  # images without ground truth: any box will do, their RoIs are background
            [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals],
            dim=0,
        )
        fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
        if pred_deltas.shape[1] != 4:  # class-specific: the deltas of each RoI's own class
            cls = gt_classes.clamp(0, self.num_classes - 1)[:, None, None].expand(-1, 1, 4)
            pred_deltas = pred_deltas.view(-1, self.num_classes, 4).gather(1, cls).squeeze(1)
        target = encode(self.box2box_transform, boxes, gt_boxes)
        loc = masked_smooth_l1(pred_deltas, target, fg, self.smooth_l1_beta)
        losses = {
            "loss_cls": cross_entropy(scores, gt_classes, reduction="mean"),
            "loss_box_reg": loc / max(gt_classes.numel(), 1.0),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def inference(self, predictions, proposals):
        matrix = switch_on("MATRIX_NMS", self.matrix_nms, predictions[0].device, self.training)
        if not matrix or self.use_sigmoid_ce:
            return super().inference(predictions, proposals)
        return fast_rcnn_inference_batched(
            self.predict_boxes(predictions, proposals),
            self.predict_probs(predictions, proposals),
            [x.image_size for x in proposals],
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk_per_image,
            to_host=self.results_to_host,
        )
