"""``MixedSupervisionRCNN``: Faster R-CNN that learns from boxes and from image labels
(``MODEL.META_ARCHITECTURE: "MixedSupervisionRCNN"``).

A training batch may mix positives with boxes, positives with an image label only
(``"annotated": false``: their boxes are not known, so every place in them may be a fracture)
and negatives. The backbone runs on the whole batch once; the image-level head
(:class:`.image_head.ImageLabelHead`) learns from every image's label; the RPN and the ROI heads
run on the images whose boxes are complete (boxed positives and negatives) only, so an
image-label-only positive is never taught that its fracture is background: its features take no
part in those losses at all (tested: zero gradient). In inference every output also carries
``image_score``, the head's abnormality probability.
"""

from __future__ import annotations

import itertools

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList

from .image_head import ImageLabelHead

BOX_LOSSES = ("loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg")


def image_label(x: dict) -> int:
    """The input's image label (1: abnormal): ``image_label``, else whether it has boxes."""
    if "image_label" in x:
        return int(x["image_label"])
    return int(len(x["instances"]) > 0) if "instances" in x else 0


@META_ARCH_REGISTRY.register()
class MixedSupervisionRCNN(GeneralizedRCNN):
    """GeneralizedRCNN plus an image-level head; see the module doc.

    Args:
        image_head: the :class:`ImageLabelHead`.
        **kwargs: GeneralizedRCNN's arguments.
    """

    # the Trainer keeps image-label-only positives in training for this architecture
    learns_from_image_labels = True

    @configurable
    def __init__(self, *, image_head: ImageLabelHead, **kwargs):
        super().__init__(**kwargs)
        self.image_head = image_head

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["image_head"] = ImageLabelHead(cfg, ret["backbone"].output_shape())
        return ret

    def forward(self, batched_inputs: list[dict]):
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        labels = torch.tensor([image_label(x) for x in batched_inputs], device=self.device)
        losses = self.image_head.losses(self.image_head(features), labels)
        boxed = [i for i, x in enumerate(batched_inputs) if x.get("annotated", True)]
        if not boxed:  # zeros tied to the heads' parameters, so DDP sees every parameter used
            params = itertools.chain(
                self.proposal_generator.parameters(), self.roi_heads.parameters()
            )
            zero = sum(p.sum() for p in params) * 0.0
            return {**losses, **{k: zero for k in BOX_LOSSES}}
        if len(boxed) < len(batched_inputs):
            images = ImageList(images.tensor[boxed], [images.image_sizes[i] for i in boxed])
            features = {k: v[boxed] for k, v in features.items()}
        gt = [batched_inputs[i]["instances"].to(self.device) for i in boxed]
        proposals, proposal_losses = self.proposal_generator(images, features, gt)
        _, detector_losses = self.roi_heads(images, features, proposals, gt)
        return {**losses, **proposal_losses, **detector_losses}

    def inference(self, batched_inputs, detected_instances=None, do_postprocess: bool = True):
        """GeneralizedRCNN's inference; each output dict also gets ``image_score`` (a 0-d
        tensor, the head's probability) when post-processed."""
        if detected_instances is not None or not do_postprocess:
            return super().inference(batched_inputs, detected_instances, do_postprocess)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        proposals, _ = self.proposal_generator(images, features, None)
        results, _ = self.roi_heads(images, features, proposals, None)
        scores = torch.sigmoid(self.image_head(features).float())
        outputs = GeneralizedRCNN._postprocess(results, batched_inputs, images.image_sizes)
        for out, score in zip(outputs, scores, strict=True):
            out["image_score"] = score
        return outputs
