"""``BatchedROIHeads``: Detectron2's ``StandardROIHeads`` with the proposals of all images
labelled and sampled at once (``MODEL.ROI_HEADS.NAME: "BatchedROIHeads"``).

With ``FRACTURE.FAST.BATCHED_HEADS`` on (:mod:`.policy`), the proposals (each image's ground
truth appended, as Detectron2 does) are padded into one tensor, matched and sampled together
(:mod:`.padded`), and the samples of all images gathered at once: one host wait for the sample
sizes, which also brings the box pooler's counts of the samples per pyramid level
(:class:`.pooler.BatchedROIPooler`). The box predictor is
:class:`.detections.BatchedFastRCNNOutputLayers` (masked box loss; with
``FRACTURE.FAST.MATRIX_NMS`` one NMS for all images and classes). Matches and labels are
Detectron2's; the random samples are drawn another (equally uniform) way. With both switches
off it is Detectron2's ``StandardROIHeads``; the parameters are the same.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage

from .box_predictor import BatchedFastRCNNOutputLayers
from .device import host_to_device
from .padded import (
    match_batched,
    pad_boxes,
    pad_rows,
    pairwise_iou_batched,
    roi_classes,
    sample_mask,
)
from .policy import fast_switches, log_now, switch_on
from .pooler import BatchedROIPooler

# Detectron2's objectness logit for ground truth appended to the proposals (sigmoid ~ 1)
GT_LOGIT = math.log((1.0 - 1e-10) / (1 - (1.0 - 1e-10)))


@ROI_HEADS_REGISTRY.register()
class BatchedROIHeads(StandardROIHeads):
    """``StandardROIHeads``, batched where ``FRACTURE.FAST.BATCHED_HEADS`` / ``MATRIX_NMS``
    are on (see the module doc). Its box pooler and box predictor are the batched subclasses
    of Detectron2's, built from the same config."""

    @configurable
    def __init__(self, *, batched=None, metrics_period: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.batched, self.metrics_period = batched, metrics_period

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        switches = fast_switches(cfg)
        ret["batched"], ret["metrics_period"] = switches["batched"], switches["metrics_period"]
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        switches = fast_switches(cfg)
        stock = ret["box_pooler"]
        ret["box_pooler"] = BatchedROIPooler(
            output_size=cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,
            scales=tuple(1.0 / input_shape[k].stride for k in ret["box_in_features"]),
            sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
            canonical_box_size=stock.canonical_box_size,
            canonical_level=stock.canonical_level,
            batched=switches["batched"],
        )
        if type(ret["box_predictor"]) is FastRCNNOutputLayers:
            ret["box_predictor"] = BatchedFastRCNNOutputLayers(
                cfg,
                ret["box_head"].output_shape,
                results_to_host=not (cfg.MODEL.MASK_ON or cfg.MODEL.KEYPOINT_ON),
                **switches,
            )
        return ret

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals, targets):
        """Detectron2's labelling and sampling of the proposals for the whole batch (see the
        module doc). Proposals or targets with fields other than boxes, logits and classes
        (masks, keypoints) go through Detectron2's own code."""
        device = proposals[0].proposal_boxes.device
        plain = all(
            set(p.get_fields()) == {"proposal_boxes", "objectness_logits"} for p in proposals
        )
        plain = plain and not any(set(t.get_fields()) - {"gt_boxes", "gt_classes"} for t in targets)
        if not (plain and switch_on("BATCHED_HEADS", self.batched, device, self.training)):
            return super().label_and_sample_proposals(proposals, targets)
        boxes, logits, gt_classes, gt, matches, fg, bg = self._label_padded(proposals, targets)
        take = fg | bg
        n_img, width = take.shape
        # the box pooler's boxes per pyramid level, read in the same copy as the sample sizes
        pooler = self.box_pooler
        hint = isinstance(pooler, BatchedROIPooler) and len(pooler.level_poolers) > 1
        if hint:
            levels, per_level = pooler.count(boxes, take)
        else:
            per_level = take.new_zeros(0, dtype=torch.int64)
        sizes = torch.cat([take.sum(dim=1), fg.sum(dim=1), per_level]).tolist()  # one host wait
        num_take, num_fg = sizes[:n_img], sizes[n_img : 2 * n_img]
        pick = _row_picker(take, num_take)
        fields = {
            "proposal_boxes": pick(boxes),
            "objectness_logits": pick(logits),
            "gt_classes": pick(gt_classes),
        }
        if gt.shape[1] > 0:  # each taken row's matched ground truth (Detectron2's gt_boxes)
            matched = matches + torch.arange(n_img, device=device)[:, None] * gt.shape[1]
            fields["gt_boxes"] = gt.flatten(0, 1).index_select(0, pick(matched))
        sampled = _split_samples(proposals, targets, fields, num_take)
        if hint:  # for the pooler's call on exactly these boxes
            pooler.leave(sampled, pick(levels.view(n_img, width)), sizes[2 * n_img :])
        if log_now(self):
            storage = get_event_storage()
            storage.put_scalar("roi_head/num_fg_samples", sum(num_fg) / n_img)
            storage.put_scalar("roi_head/num_bg_samples", (sum(num_take) - sum(num_fg)) / n_img)
        return sampled

    def _label_padded(self, proposals, targets):
        """The batch's proposals padded into (B, N) rows (each image's ground truth appended
        after its proposals), matched, labelled and sampled: boxes, objectness logits, training
        classes (-1 for padding), padded ground truth, matches, and the fg / bg sample masks."""
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
        return boxes, logits, gt_classes, gt, matches, fg, bg


def _row_picker(take: torch.Tensor, num_take: list[int]):
    """A function (B, N, ...) -> the rows ``take`` (B, N) selects, image after image, each
    image's in row order; ``num_take``: the rows per image, already on the host."""
    n_img, width = take.shape
    device = take.device
    order = torch.argsort((~take).to(torch.uint8), dim=1, stable=True)  # taken rows first
    rows = np.concatenate([np.arange(k) + n * width for n, k in enumerate(num_take)])
    picked = order.flatten().index_select(0, host_to_device(rows, device, torch.int64))
    picked += host_to_device(np.repeat(np.arange(n_img) * width, num_take), device, torch.int64)
    return lambda t: t.flatten(0, 1).index_select(0, picked)


def _split_samples(proposals, targets, fields: dict, num_take: list[int]) -> list[Instances]:
    """Per image, an ``Instances`` of its sampled rows of ``fields`` (as Detectron2's: images
    without ground truth get no ``gt_boxes``)."""
    fields = {k: v.split(num_take) for k, v in fields.items()}
    sampled = []
    for n, (props, trg) in enumerate(zip(proposals, targets, strict=True)):
        res = Instances(props.image_size)
        res.proposal_boxes = Boxes(fields["proposal_boxes"][n])
        res.objectness_logits = fields["objectness_logits"][n]
        res.gt_classes = fields["gt_classes"][n]
        if len(trg) > 0:
            res.gt_boxes = Boxes(fields["gt_boxes"][n])
        sampled.append(res)
    return sampled
