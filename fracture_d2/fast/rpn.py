"""``BatchedRPN``: Detectron2's RPN with its training targets, losses and proposal selection
computed for the whole batch at once (``MODEL.PROPOSAL_GENERATOR.NAME: "BatchedRPN"``).

Detectron2 labels anchors and selects proposals image by image; every image costs a few dozen
small operations and, on a GPU, several host-device synchronisations. With
``FRACTURE.FAST.BATCHED_HEADS`` on (:mod:`.policy`):

- anchor labelling: one padded (images, ground truth, anchors) IoU, matcher and sampling for
  the batch (:mod:`.padded`), no host wait; matches and labels are Detectron2's, the random
  sample is drawn another (equally uniform) way;
- losses: masked sums instead of boolean indexing; the anchor counts are logged every
  ``FRACTURE.FAST.METRICS_PERIOD`` iterations;
- proposals: each level's top-k anchors decoded in one call, clipped and filtered for all images
  at once (:mod:`.proposals`), then torchvision's NMS per image, or with
  ``FRACTURE.FAST.MATRIX_NMS`` one NMS for every image and level (:mod:`.matrix_nms`);
- anchors made on the device and cached per feature-map size (:mod:`.anchors`).

With both switches off it is Detectron2's ``RPN``, and its parameters are the same, so
checkpoints load into either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.structures import Boxes
from detectron2.utils.events import get_event_storage

from .anchors import CachedAnchorGenerator
from .box_transform import encode
from .padded import masked_smooth_l1, match_batched, pad_boxes, pairwise_iou_batched, sample_mask
from .policy import fast_switches, log_now, switch_on
from .proposals import select_proposals, top_decoded_proposals


@PROPOSAL_GENERATOR_REGISTRY.register()
class BatchedRPN(RPN):
    """Detectron2's RPN, batched where ``FRACTURE.FAST.BATCHED_HEADS`` / ``MATRIX_NMS`` are on
    (see the module doc).

    Args:
        batched, matrix_nms: the switches (None: on where :mod:`.policy` says).
        metrics_period: log the anchor counts every this many iterations.
        **kwargs: Detectron2's ``RPN`` arguments.
    """

    @configurable
    def __init__(self, *, batched=None, matrix_nms=None, metrics_period: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.batched, self.matrix_nms, self.metrics_period = batched, matrix_nms, metrics_period

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        if type(ret["anchor_generator"]) is DefaultAnchorGenerator:
            features = [input_shape[f] for f in cfg.MODEL.RPN.IN_FEATURES]
            ret["anchor_generator"] = CachedAnchorGenerator(cfg, features)
        return {**ret, **fast_switches(cfg)}

    def _on(self, name: str, value, device) -> bool:
        return switch_on(name, value, device, self.training)

    @torch.no_grad()
    def label_and_sample_anchors(self, anchors, gt_instances):
        """(B, R) int8 labels and (B, R, 4) matched boxes for the batch at once."""
        device = anchors[0].device
        if self.anchor_boundary_thresh >= 0 or not self._on("BATCHED_HEADS", self.batched, device):
            return super().label_and_sample_anchors(anchors, gt_instances)
        anchors = Boxes.cat(anchors).tensor
        gt, valid = pad_boxes([x.gt_boxes.tensor for x in gt_instances], device)
        matches, labels = match_batched(
            self.anchor_matcher, pairwise_iou_batched(gt, anchors), valid
        )
        pos, neg = sample_mask(labels, self.batch_size_per_image, self.positive_fraction, 0)
        labels = labels.fill_(-1).masked_fill_(pos, 1).masked_fill_(neg, 0)
        if gt.shape[1] == 0:
            matched = anchors.new_zeros(len(gt_instances), *anchors.shape)
        else:  # images without ground truth gather padding zeros, as Detectron2's zeros
            matched = gt.gather(1, matches[..., None].expand(-1, -1, 4))
        return labels, matched

    def losses(self, anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes):
        """Detectron2's RPN losses as masked sums (no boolean indexing, so no host wait)."""
        device = pred_objectness_logits[0].device
        batched = self._on("BATCHED_HEADS", self.batched, device)
        if self.box_reg_loss_type != "smooth_l1" or not batched:
            return super().losses(
                anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes
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
        deltas = encode(
            self.box2box_transform, anchors.repeat(num_images, 1), gt_boxes.reshape(-1, 4)
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

    def predict_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes):
        """Detectron2's proposal selection for the batch at once (:mod:`.proposals`)."""
        device = pred_objectness_logits[0].device
        matrix = self._on("MATRIX_NMS", self.matrix_nms, device)
        if not (matrix or self._on("BATCHED_HEADS", self.batched, device)):
            return super().predict_proposals(
                anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes
            )
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
                matrix,
            )
