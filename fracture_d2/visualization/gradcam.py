"""What drove a detection: a gradient class-activation map for one detected box, and the RPN's
objectness map.

The target is the chosen box's class score as log-odds, ``logit_c - logsumexp(other logits)``
(the pre-softmax score of a one-class detector), computed from the box's own RoI features; its
gradient ``G`` with respect to a feature map ``A`` (a backbone stage ``res2..res5`` or an FPN
level ``p2..p6``) weighs the activations:

- ``gradcam`` (Selvaraju et al., 2017): channel weights ``w_k = mean(G_k)``, map
  ``relu(sum_k w_k A_k)``. The weights come from the box but are applied everywhere, so on a
  detector the map lights up every place with similar low-level features (bone edges, on
  radiographs) rather than the box's own evidence.
- ``hirescam`` (element-wise Grad-CAM: HiResCAM, Draelos & Carin 2020; ODAM, Zhao et al. 2023
  for detectors): ``relu(sum_k G_k * A_k)``, the positions whose activations raised this box's
  score. Instance-specific; the default.

``layer="pooled"`` uses the FPN level RoIAlign pooled the box from (the only FPN level its score
has a gradient on: the map stays inside the proposal); a backbone stage such as ``res3`` also
shows the context the FPN brought in. Works on CPU: one forward and one backward pass per box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.structures import Boxes, Instances

CAM_METHODS = ("hirescam", "gradcam")
CAM_NAMES = {"hirescam": "HiResCAM (element-wise Grad-CAM)", "gradcam": "Grad-CAM"}


@dataclass
class Explanation:
    """Detections of one image with a Grad-CAM map for one of them and the objectness map.

    Boxes are xyxy in original pixels; ``cam`` and ``objectness`` are HxW float32 arrays at the
    original size: ``cam`` (``method`` on ``layer``) normalised to 0..1, ``objectness`` the
    RPN's probability (0..1, the maximum over anchors and FPN levels).
    """

    boxes: np.ndarray
    scores: np.ndarray
    box_index: int
    layer: str
    method: str
    cam: np.ndarray
    objectness: np.ndarray


def _to_image(maps: torch.Tensor, padded_hw, image_hw, out_hw) -> np.ndarray:
    """``(1, 1, h, w)`` map over the padded input -> ``(H, W)`` over the original image."""
    up = F.interpolate(maps, size=padded_hw, mode="bilinear", align_corners=False)
    up = up[0, 0, : image_hw[0], : image_hw[1]][None, None]
    out = F.interpolate(up, size=out_hw, mode="bilinear", align_corners=False)[0, 0]
    return out.float().cpu().numpy()  # from the model's device and dtype


def _check_model(model):
    if not isinstance(model.roi_heads, StandardROIHeads) or model.proposal_generator is None:
        raise ValueError(
            "Grad-CAM needs a two-stage model with StandardROIHeads (GeneralizedRCNN + RPN), "
            f"got {type(model.roi_heads).__name__}"
        )


def explain(
    predictor, gray: np.ndarray, box_index: int = 0, layer: str = "res3", method: str = "hirescam"
) -> Explanation:
    """Detect on one image and explain one detection.

    Args:
        predictor: a :class:`fracture_d2.inference.predictor.BatchPredictor`.
        gray: 2-D uint8 radiograph.
        box_index: which detection to explain, by rank (0 = highest score).
        layer: a backbone stage (``"res3"``), an FPN level (``"p3"``) or ``"pooled"``.
        method: ``"hirescam"`` (element-wise) or ``"gradcam"`` (channel-averaged).

    Returns:
        An :class:`Explanation`; ``cam`` is all zeros when the image has no detection.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"CAM method must be one of {CAM_METHODS}, got {method!r}")
    model = predictor.model
    _check_model(model)
    inputs = predictor.preprocess(gray)
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _args, output):
        captured.update(output)

    bottom_up = getattr(model.backbone, "bottom_up", None)
    handles = [m.register_forward_hook(keep) for m in (model.backbone, bottom_up) if m is not None]
    grads: dict[str, torch.Tensor | None] = {}
    try:
        with torch.enable_grad():
            images = model.preprocess_image([inputs])
            features = model.backbone(images.tensor)
            if layer != "pooled" and layer not in captured:
                raise ValueError(
                    f"CAM layer {layer!r} not among the model's {sorted(captured)} or 'pooled'"
                )
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
                names = list(heads.box_in_features) if layer == "pooled" else [layer]
                # Gradients for the feature maps only: no weight gradients are computed or kept.
                values = torch.autograd.grad(
                    logits[row, cls] - torch.logsumexp(others, 0),
                    [captured[n] for n in names],
                    allow_unused=True,
                )
                grads = dict(zip(names, values, strict=True))
    finally:
        for h in handles:
            h.remove()

    padded, size = tuple(images.tensor.shape[-2:]), images.image_sizes[0]
    out_hw = gray.shape[:2]
    if layer == "pooled":  # the level the RoI was pooled from: the only one with a gradient
        norms = {n: float(g.abs().sum()) if g is not None else 0.0 for n, g in grads.items()}
        layer = max(norms, key=norms.get) if norms else heads.box_in_features[0]
    cam = np.zeros(out_hw, np.float32)
    grad = grads.get(layer)
    if grad is not None:
        act = captured[layer][0].detach()
        grad = grad[0]
        if method == "gradcam":
            grad = grad.mean(dim=(1, 2), keepdim=True)
        raw = torch.relu((grad * act).sum(0))
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
        method=method,
        cam=cam.astype(np.float32),
        objectness=objectness.astype(np.float32),
    )
