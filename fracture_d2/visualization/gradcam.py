"""What drove a detection: Grad-CAM for one detected box, and the RPN's objectness map.

Grad-CAM (Selvaraju et al., 2017) for a detector: the target is the chosen box's class score
as log-odds, ``logit_c - logsumexp(other logits)`` (the pre-softmax score of a one-class
detector), computed from the box's own RoI features. Its gradient with respect to a feature map
``A`` (an FPN level ``p2..p6`` or a backbone stage ``res2..res5``) is averaged over space to
weigh the channels; ``relu(sum_k w_k A_k)`` is the map. Channel weights come from the box, but
the map covers the whole image, so it also shows other places with the same evidence.

With ``layer="auto"`` the FPN level the box was pooled from is used (the only FPN level its
score has a gradient on). Works on CPU; one forward and one backward pass per box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Boxes, Instances


@dataclass
class Explanation:
    """Detections of one image with a Grad-CAM map for one of them and the objectness map.

    Boxes are xyxy in original pixels; ``cam`` and ``objectness`` are HxW float32 arrays at the
    original size: ``cam`` normalised to 0..1, ``objectness`` the RPN's probability (0..1, the
    maximum over anchors and FPN levels).
    """

    boxes: np.ndarray
    scores: np.ndarray
    box_index: int
    layer: str
    cam: np.ndarray
    objectness: np.ndarray


def _to_image(maps: torch.Tensor, padded_hw, image_hw, out_hw) -> np.ndarray:
    """``(1, 1, h, w)`` map over the padded input -> ``(H, W)`` over the original image."""
    up = F.interpolate(maps, size=padded_hw, mode="bilinear", align_corners=False)
    up = up[0, 0, : image_hw[0], : image_hw[1]][None, None]
    return F.interpolate(up, size=out_hw, mode="bilinear", align_corners=False)[0, 0].numpy()


def _check_model(model):
    if not isinstance(model.roi_heads, StandardROIHeads) or model.proposal_generator is None:
        raise ValueError(
            "Grad-CAM needs a two-stage model with StandardROIHeads (GeneralizedRCNN + RPN), "
            f"got {type(model.roi_heads).__name__}"
        )


def explain(predictor, gray: np.ndarray, box_index: int = 0, layer: str = "auto") -> Explanation:
    """Detect on one image and explain one detection.

    Args:
        predictor: a :class:`fracture_d2.inference.predictor.BatchPredictor`.
        gray: 2-D uint8 radiograph.
        box_index: which detection to explain, by rank (0 = highest score).
        layer: ``"auto"``, an FPN level (``"p3"``) or a backbone stage (``"res4"``).

    Returns:
        An :class:`Explanation`; ``cam`` is all zeros when the image has no detection.
    """
    model = predictor.model
    _check_model(model)
    inputs = predictor.preprocess(gray)
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _args, output):
        for name, t in output.items():
            if t.requires_grad:
                t.retain_grad()
            captured[name] = t

    bottom_up = getattr(model.backbone, "bottom_up", None)
    handles = [m.register_forward_hook(keep) for m in (model.backbone, bottom_up) if m is not None]
    try:
        with torch.enable_grad():
            images = model.preprocess_image([inputs])
            features = model.backbone(images.tensor)
            if layer != "auto" and layer not in captured:
                raise ValueError(f"layer {layer!r} not among the model's {sorted(captured)}")
            proposals, _ = model.proposal_generator(images, features, None)
            heads = model.roi_heads
            pooled = heads.box_pooler(
                [features[f] for f in heads.box_in_features], [p.proposal_boxes for p in proposals]
            )
            logits, deltas = heads.box_predictor(heads.box_head(pooled))
            (instances,), (rows,) = heads.box_predictor.inference((logits, deltas), proposals)
            if box_index < len(instances):
                row, cls = rows[box_index], instances.pred_classes[box_index]
                others = torch.cat([logits[row, :cls], logits[row, cls + 1 :]])
                (logits[row, cls] - torch.logsumexp(others, 0)).backward()
    finally:
        for h in handles:
            h.remove()

    padded, size = tuple(images.tensor.shape[-2:]), images.image_sizes[0]
    out_hw = gray.shape[:2]
    if layer == "auto":  # the level the RoI was pooled from: the only one with a gradient
        grads = {
            f: float(captured[f].grad.abs().sum()) if captured[f].grad is not None else 0.0
            for f in heads.box_in_features
        }
        layer = max(grads, key=grads.get)
    cam = np.zeros(out_hw, np.float32)
    target = captured[layer]
    if box_index < len(instances) and target.grad is not None:
        weights = target.grad[0].mean(dim=(1, 2))
        raw = torch.relu((weights[:, None, None] * target[0]).sum(0)).detach()
        cam = _to_image(raw[None, None], padded, size, out_hw)
        cam = cam / cam.max() if cam.max() > 0 else cam

    with torch.no_grad():
        rpn = model.proposal_generator
        logits_per_level, _ = rpn.rpn_head([features[f].detach() for f in rpn.in_features])
        objectness = np.zeros(out_hw, np.float32)
        for lv in logits_per_level:
            prob = torch.sigmoid(lv[:1]).amax(dim=1, keepdim=True)
            objectness = np.maximum(objectness, _to_image(prob, padded, size, out_hw))

    det = Instances(instances.image_size)
    det.pred_boxes = Boxes(instances.pred_boxes.tensor.detach().cpu().clone())
    det.scores = instances.scores.detach().cpu()
    det = detector_postprocess(det, out_hw[0], out_hw[1])
    return Explanation(
        boxes=det.pred_boxes.tensor.numpy().astype(np.float64),
        scores=det.scores.numpy().astype(np.float64),
        box_index=box_index,
        layer=layer,
        cam=cam.astype(np.float32),
        objectness=objectness.astype(np.float32),
    )
