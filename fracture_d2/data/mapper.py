"""The training/test mapper for radiographs: Detectron2's mapper contract, albumentations inside.

A mapped dict carries ``image`` (CxHxW uint8 tensor), ``height``/``width`` (original size),
``instances`` (training) and ``aug_dropped_boxes`` (boxes augmentation dropped, for logging).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from .augment import build_radiograph_augmentation
from .image_io import read_radiograph, to_model_format


class RadiographMapper:
    """Map a Detectron2 dataset dict to model input, for radiographs.

    Reads 8/16-bit, 1/3-channel images as gray (16-bit scaled, not truncated), applies the
    albumentations pipeline (training only) keeping boxes consistent, then Detectron2's
    resize. The test-time path only resizes.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        resize: list,
        albu=None,
        image_format: str = "BGR",
        keep_annotations: bool | None = None,
    ):
        self.is_train = is_train
        self.resize = T.AugmentationList(resize)
        self.albu = albu
        self.image_format = image_format
        self.keep_annotations = is_train if keep_annotations is None else keep_annotations

    @classmethod
    def from_config(cls, cfg, is_train: bool = True, augment: bool | None = None):
        """``augment`` defaults to ``is_train``; ``is_train=True, augment=False`` gives the
        validation-loss path (test-time resize, annotations kept)."""
        augment = is_train if augment is None else augment
        if is_train and augment:
            resize = T.ResizeShortestEdge(
                cfg.INPUT.MIN_SIZE_TRAIN,
                cfg.INPUT.MAX_SIZE_TRAIN,
                cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING,
            )
        else:
            resize = T.ResizeShortestEdge(
                cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice"
            )
        return {
            "is_train": is_train,
            "resize": [resize],
            "albu": build_radiograph_augmentation(cfg) if augment else None,
            "image_format": cfg.INPUT.FORMAT,
            "keep_annotations": is_train,
        }

    def _augment(self, gray, annos):
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annos]
        out = self.albu(
            image=gray,
            bboxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=list(range(len(annos))),
        )
        kept = []
        for box, i in zip(out["bboxes"], out["labels"], strict=True):
            a = dict(annos[int(i)], bbox=[float(v) for v in box], bbox_mode=BoxMode.XYXY_ABS)
            kept.append(a)
        return out["image"], kept, len(annos) - len(kept)

    def __call__(self, dataset_dict: dict) -> dict:
        d = copy.deepcopy(dataset_dict)
        gray = read_radiograph(d["file_name"])
        utils.check_image_size(d, gray)
        annos = [a for a in d.pop("annotations", []) if a.get("iscrowd", 0) == 0]
        dropped = 0
        if self.albu is not None:
            gray, annos, dropped = self._augment(gray, annos)
        aug_input = T.AugInput(to_model_format(gray, self.image_format))
        transforms = self.resize(aug_input)
        image = aug_input.image
        d["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        d["aug_dropped_boxes"] = dropped
        if self.keep_annotations:
            annos = [
                utils.transform_instance_annotations(a, transforms, image.shape[:2]) for a in annos
            ]
            instances = utils.annotations_to_instances(annos, image.shape[:2])
            d["instances"] = utils.filter_empty_instances(instances)
        return d
