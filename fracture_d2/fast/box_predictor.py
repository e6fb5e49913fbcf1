"""``BatchedFastRCNNOutputLayers``: the batched ROI heads' box predictor."""

from __future__ import annotations

from detectron2.layers import cat, cross_entropy
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, _log_classification_stats

from .box_transform import encode
from .detections import fast_rcnn_inference_batched
from .padded import masked_smooth_l1
from .policy import log_now, switch_on


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
