"""Radiograph augmentation (albumentations), built from ``cfg.INPUT.RADIOGRAPH_AUG``."""

from __future__ import annotations

import albumentations as A
import cv2


def build_radiograph_augmentation(cfg) -> A.Compose | None:
    """Albumentations pipeline for 2-D uint8 radiographs with ``pascal_voc`` boxes.

    Boxes are passed with a ``labels`` field (the caller's annotation indices), so the caller
    knows which boxes survived; boxes that leave the image or keep less than
    ``MIN_VISIBILITY`` of their area are dropped. Rotations use the corners of the box
    ("largest_box"), so a kept box still covers everything it covered before.

    Returns:
        The pipeline, or ``None`` when disabled.
    """
    c = cfg.INPUT.RADIOGRAPH_AUG
    if not c.ENABLED:
        return None
    const = cv2.BORDER_CONSTANT
    transforms = [
        A.HorizontalFlip(p=c.HFLIP_PROB),
        A.Affine(
            translate_percent=(-c.SHIFT_LIMIT, c.SHIFT_LIMIT),
            scale=(1 - c.SCALE_LIMIT, 1 + c.SCALE_LIMIT),
            border_mode=const,
            fill=0,
            p=c.SHIFT_SCALE_PROB,
        ),
        A.Rotate(
            limit=c.ROTATE_LIMIT,
            border_mode=const,
            fill=0,
            rotate_method="largest_box",
            p=c.ROTATE_PROB,
        ),
        A.RandomBrightnessContrast(
            brightness_limit=c.BRIGHTNESS_LIMIT,
            contrast_limit=c.CONTRAST_LIMIT,
            p=c.BRIGHTNESS_CONTRAST_PROB,
        ),
        A.RandomGamma(gamma_limit=tuple(c.GAMMA_LIMIT), p=c.GAMMA_PROB),
        A.CLAHE(clip_limit=c.CLAHE_CLIP_LIMIT, tile_grid_size=(8, 8), p=c.CLAHE_PROB),
        A.GaussNoise(std_range=tuple(c.NOISE_STD), p=c.NOISE_PROB),
    ]
    return A.Compose(
        [t for t in transforms if t.p > 0],
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["labels"],
            min_visibility=c.MIN_VISIBILITY,
            clip=True,
            filter_invalid_bboxes=True,
        ),
        seed=None,
    )
