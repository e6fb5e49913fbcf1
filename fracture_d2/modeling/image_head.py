"""An image-level abnormality head on the FPN features, trained from image labels.

MURA labels each study normal or abnormal and boxes nothing. The head turns the feature pyramid
into one abnormality logit per image: a shared 3x3 convolution (GroupNorm, ReLU) on each level,
global max pooling over positions (a fracture is local, so the image is abnormal where some
position is: the multiple-instance view of weakly supervised detection), the levels
concatenated, one linear layer. It trains with binary cross-entropy on every image, boxed or
not, and its gradient reaches the backbone, so image labels shape the features the detector
uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import nn


class ImageLabelHead(nn.Module):
    """Abnormality logit per image from FPN features (see the module doc).

    Args:
        in_features: the FPN levels pooled, e.g. ``("p3", "p4", "p5", "p6")``.
        in_channels: their channel count (FPN levels share it).
        pooling: ``"max"`` (default) or ``"avg"`` over positions.
        loss_weight: weight of ``loss_image_cls``.
        norm: after the convolution, a Detectron2 norm name (``"GN"``) or ``""`` for none.
            Without it, the head of the synthetic benchmark died in training (every ReLU
            output 0, one probability for every image); GroupNorm keeps about half of each
            group's outputs positive.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features,
        in_channels: int,
        pooling: str = "max",
        loss_weight=1.0,
        norm: str = "GN",
    ):
        super().__init__()
        if pooling not in ("max", "avg"):
            raise ValueError(f"MODEL.IMAGE_HEAD.POOLING must be max or avg, got {pooling!r}")
        self.in_features, self.pooling, self.loss_weight = tuple(in_features), pooling, loss_weight
        self.conv = Conv2d(
            in_channels,
            in_channels,
            3,
            padding=1,
            bias=not norm,
            norm=get_norm(norm, in_channels),
        )
        self.cls = nn.Linear(in_channels * len(self.in_features), 1)
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.constant_(self.cls.bias, 0.0)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        head = cfg.MODEL.IMAGE_HEAD
        missing = [f for f in head.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.IMAGE_HEAD.IN_FEATURES {missing} are not backbone outputs "
                f"{sorted(input_shape)}"
            )
        return {
            "in_features": head.IN_FEATURES,
            "in_channels": input_shape[head.IN_FEATURES[0]].channels,
            "pooling": head.POOLING,
            "loss_weight": head.LOSS_WEIGHT,
            "norm": head.NORM,
        }

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) abnormality logits."""
        pooled = []
        for name in self.in_features:
            x = F.relu(self.conv(features[name]))
            pooled.append(x.amax(dim=(2, 3)) if self.pooling == "max" else x.mean(dim=(2, 3)))
        return self.cls(torch.cat(pooled, dim=1)).squeeze(1)

    def losses(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``loss_image_cls``: binary cross-entropy against (B,) 0/1 image labels."""
        loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return {"loss_image_cls": loss * self.loss_weight}
