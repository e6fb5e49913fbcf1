"""Detections of the box predictor for the whole batch at once (with ``MATRIX_NMS``).

Detectron2 thresholds, suppresses and ranks each image's RoIs on its own (one torchvision NMS
call and several host waits per image). :func:`fast_rcnn_inference_batched` pads the RoIs of all
images into one tensor and runs one :mod:`.matrix_nms` over every image and class: the same
detections, one host wait for their counts.
"""

from __future__ import annotations

import torch
from detectron2.modeling.roi_heads.fast_rcnn import (
    fast_rcnn_inference,
)
from detectron2.structures import Boxes, Instances

from .device import device_to_host, host_to_device
from .matrix_nms import FIRST_ROUNDS, nms_keep, nms_keep_rounds
from .padded import pad_rows
from .proposals import clip_boxes, read_counts


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
