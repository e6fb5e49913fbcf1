"""Faster R-CNN FPN inference with static shapes and no host wait
(``FRACTURE.FAST.STATIC_INFERENCE``).

Detectron2's inference keeps a variable number of boxes at every step (proposals after NMS,
boxes per pyramid level in the pooler, detections above the score threshold), so each step
waits for the GPU to learn a size, and ``torch.compile`` cannot capture the model as one graph.
:class:`StaticRCNN` runs the same model on tensors of fixed shapes, with validity masks where
Detectron2 drops rows:

- proposals: each level's top-k anchors decoded, clipped, filtered and suppressed per image and
  level by :func:`.matrix_nms.nms_keep_rounds` (a fixed number of rounds), then the
  ``POST_NMS_TOPK_TEST`` best per image as a padded (B, P, 4) tensor;
- box pooling: every RoI pooled at every pyramid level and each one's own level selected (the
  same values as Detectron2's per-level pooling, four times the RoIAlign work);
- detections: the score threshold, the per-class NMS and the top ``DETECTIONS_PER_IMAGE`` as
  masks and a top-k (:func:`.detections.detections_padded`).

So one host wait per batch remains (to read the results), and for a fixed input size the whole
forward can be compiled and replayed as one CUDA graph (``COMPILE_BACKBONE`` + ``COMPILE_MODE
reduce-overhead`` compile this whole forward instead of the backbone alone). The detections are
Detectron2's when the NMS converged within its rounds; :func:`static_predict` checks the flag
it returns and reruns a batch that did not converge with the model's own forward.
"""

from __future__ import annotations

import logging
import weakref

import torch
import torch.nn.functional as F
from detectron2.modeling.meta_arch import GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes, ImageList, Instances

from .box_transform import decode
from .detections import detections_padded
from .device import device_to_host
from .pooler import pooler_levels
from .proposals import rpn_candidates, top_kept_proposals

logger = logging.getLogger("fracture_d2")


def check_static_model(model) -> None:
    """Raise ValueError naming the part of ``model`` :class:`StaticRCNN` does not support."""
    parts = (
        (isinstance(model, GeneralizedRCNN), "a GeneralizedRCNN meta-architecture"),
        (isinstance(getattr(model, "proposal_generator", None), RPN), "an RPN"),
        (isinstance(getattr(model, "roi_heads", None), StandardROIHeads), "StandardROIHeads"),
    )
    for ok, what in parts:
        if not ok:
            raise ValueError(f"FRACTURE.FAST.STATIC_INFERENCE needs {what}")
    roi = model.roi_heads
    if not isinstance(roi.box_predictor, FastRCNNOutputLayers) or roi.box_predictor.use_sigmoid_ce:
        raise ValueError("FRACTURE.FAST.STATIC_INFERENCE needs a softmax FastRCNNOutputLayers")
    if roi.mask_on or roi.keypoint_on:
        raise ValueError("FRACTURE.FAST.STATIC_INFERENCE supports box detection only")
    if hasattr(model, "image_head"):
        raise ValueError(
            "FRACTURE.FAST.STATIC_INFERENCE does not run image-level heads (MixedSupervisionRCNN)"
        )


def pool_all_levels(pooler, features: list, boxes: torch.Tensor) -> torch.Tensor:
    """``ROIPooler.forward`` for (B, P, 4) boxes without a host wait: every box pooled at every
    level, each keeping its own level's result (the same values), (B * P, C, S, S)."""
    n_img, per_image = boxes.shape[:2]
    flat = boxes.reshape(-1, 4)
    index = torch.arange(n_img, device=boxes.device, dtype=flat.dtype)
    rois = torch.cat([index.repeat_interleave(per_image)[:, None], flat], dim=1)
    if len(pooler.level_poolers) == 1:
        return pooler.level_poolers[0](features[0], rois)
    levels = pooler_levels(pooler, flat)
    out = None
    for level, (feature, level_pooler) in enumerate(
        zip(features, pooler.level_poolers, strict=True)
    ):
        pooled = level_pooler(feature, rois)
        out = (
            pooled
            if out is None
            else torch.where(levels[:, None, None, None] == level, pooled, out)
        )
    return out


class StaticRCNN(torch.nn.Module):
    """Inference of a GeneralizedRCNN (RPN + StandardROIHeads, boxes only) on a normalised,
    padded (B, 3, H, W) batch with (B, 2) image heights and widths; see the module doc.

    Returns padded (B, D, 4) boxes in input-image pixels, (B, D) scores, (B, D) classes, (B, D)
    validity (the detections come first) and a 0-d bool: whether both NMS stages converged.
    """

    def __init__(self, model: torch.nn.Module, nms_rounds: int = 12):
        super().__init__()
        check_static_model(model)
        self.model = model
        self.nms_rounds = nms_rounds

    def forward(self, images: torch.Tensor, sizes: torch.Tensor):
        model = self.model
        features = model.backbone(images)
        rpn = model.proposal_generator
        boxes, scores, valid, level_sizes = rpn_candidates(
            rpn, [features[f] for f in rpn.in_features], sizes, rpn.pre_nms_topk[False]
        )
        proposals, _, proposal_valid, rpn_converged = top_kept_proposals(
            boxes,
            scores,
            valid,
            level_sizes,
            rpn.nms_thresh,
            rpn.post_nms_topk[False],
            self.nms_rounds,
        )

        roi = model.roi_heads
        pooled = pool_all_levels(
            roi.box_pooler, [features[f] for f in roi.box_in_features], proposals
        )
        predictor = roi.box_predictor
        class_logits, proposal_deltas = predictor(roi.box_head(pooled))
        n_img, per_image = proposals.shape[:2]
        probs = F.softmax(class_logits, dim=-1).view(n_img, per_image, -1)
        pred = decode(predictor.box2box_transform, proposal_deltas, proposals.reshape(-1, 4))
        det_boxes, det_scores, det_classes, _, det_valid, det_converged = detections_padded(
            pred.view(n_img, per_image, -1),
            probs,
            proposal_valid,
            sizes,
            predictor.test_score_thresh,
            predictor.test_nms_thresh,
            predictor.test_topk_per_image,
            self.nms_rounds,
        )
        return det_boxes, det_scores, det_classes, det_valid, rpn_converged & det_converged


def static_predict(model, forward, batched_inputs: list[dict], pad: int = 0) -> list[dict]:
    """``model(batched_inputs)`` (eval mode) through ``forward`` (a :class:`StaticRCNN`, maybe
    compiled): the same preprocessing and post-processing as Detectron2, one host wait to read
    the results; a batch whose NMS did not converge is rerun by ``model`` itself. ``pad``: pad
    the batch's height and width up to a multiple of it (0: as Detectron2)."""
    images: ImageList = model.preprocess_image(batched_inputs)
    tensor = images.tensor
    if pad > 0:
        h, w = tensor.shape[-2:]
        tensor = F.pad(tensor, (0, -w % pad, 0, -h % pad))
    sizes = torch.tensor(images.image_sizes, dtype=tensor.dtype)
    if tensor.is_cuda:
        sizes = sizes.pin_memory()
    boxes, scores, classes, valid, converged = forward(
        tensor, sizes.to(tensor.device, non_blocking=True)
    )
    # one copy to the host (one wait); boxes and scores as float32, as Detectron2 returns them
    boxes, scores, classes, valid, converged = device_to_host(
        boxes.float(), scores.float(), classes, valid, converged
    )
    if not bool(converged):
        logger.warning("static inference: NMS did not converge; this batch runs the eager model")
        return model(batched_inputs)
    results = []
    for n, (x, image_size) in enumerate(zip(batched_inputs, images.image_sizes, strict=True)):
        count = int(valid[n].sum())
        inst = Instances(image_size)
        inst.pred_boxes = Boxes(boxes[n, :count])
        inst.scores = scores[n, :count]
        inst.pred_classes = classes[n, :count]
        height = x.get("height", image_size[0])
        width = x.get("width", image_size[1])
        results.append({"instances": detector_postprocess(inst, height, width)})
    return results


class StaticInferenceModel(torch.nn.Module):
    """``model`` with its eval-mode forward through :class:`StaticRCNN` (:func:`static_predict`);
    training mode is the model's own forward. ``compile_mode``: compile the static forward whole
    (``torch.compile`` mode; None: eager); ``pad``: see :func:`static_predict`."""

    def __init__(self, model, nms_rounds: int = 12, pad: int = 0, compile_mode: str | None = None):
        super().__init__()
        self.model = model
        static = StaticRCNN(model, nms_rounds)
        if compile_mode is not None:  # one graph per input size
            static = torch.compile(static, mode=compile_mode, dynamic=False)
        self._static = [static]  # a list: not a second registration of the model's parameters
        self.pad = pad

    def forward(self, batched_inputs):
        if self.model.training:
            return self.model(batched_inputs)
        return static_predict(self.model, self._static[0], batched_inputs, self.pad)


def inference_model(model, cfg):
    """``model`` for inference under ``FRACTURE.FAST.STATIC_INFERENCE``: a :class:`
    StaticInferenceModel` kept on the model (so compiled graphs are reused across evaluations),
    or ``model`` itself when the switch is off. A DistributedDataParallel wrapper is looked
    through."""
    fast = cfg.FRACTURE.FAST
    if not fast.STATIC_INFERENCE:
        return model
    model = getattr(model, "module", model)  # DDP: the model itself runs inference
    key = (fast.NMS_ROUNDS, fast.STATIC_PAD, fast.COMPILE_BACKBONE, fast.COMPILE_MODE)
    cached = _STATIC_MODELS.get(model)
    if cached is None or cached[0] != key:
        mode = fast.COMPILE_MODE if fast.COMPILE_BACKBONE else None
        cached = (key, StaticInferenceModel(model, fast.NMS_ROUNDS, fast.STATIC_PAD, mode))
        _STATIC_MODELS[model] = cached
    return cached[1]


# model -> (its switches, its StaticInferenceModel): compiled graphs are reused across
# evaluations of the same model, and go with it
_STATIC_MODELS = weakref.WeakKeyDictionary()
