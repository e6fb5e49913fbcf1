"""Radiograph mapper: boxes stay on their fractures through augmentation; 16-bit and colour
inputs are read as scaled gray; the test path only resizes."""

import cv2
import numpy as np
import pytest
from detectron2.structures import BoxMode

from fracture_d2.config import get_fracture_cfg
from fracture_d2.data.augment import build_radiograph_augmentation
from fracture_d2.data.image_io import read_radiograph, to_uint8
from fracture_d2.data.mapper import RadiographMapper
from fracture_d2.data.synth_radiograph import BODY_PARTS, render_radiograph


def _all_on_cfg():
    cfg = get_fracture_cfg()
    a = cfg.INPUT.RADIOGRAPH_AUG
    for key in (
        "HFLIP_PROB",
        "BRIGHTNESS_CONTRAST_PROB",
        "GAMMA_PROB",
        "CLAHE_PROB",
        "ROTATE_PROB",
        "SHIFT_SCALE_PROB",
        "NOISE_PROB",
    ):
        setattr(a, key, 1.0)
    return cfg


def _fracture_and_mask(seed, part):
    broken, boxes = render_radiograph(part, (240, 300), 1, np.random.default_rng(seed))
    intact, _ = render_radiograph(part, (240, 300), 0, np.random.default_rng(seed))
    mask = (intact.astype(int) - broken.astype(int) > 40).astype(np.uint8)
    x0, y0, x1, y1 = (int(v) for v in boxes[0])
    inside = np.zeros_like(mask)
    inside[y0:y1, x0:x1] = 1
    return broken, boxes[0], mask * inside


@pytest.mark.parametrize("seed", range(14))
def test_kept_box_still_covers_its_fracture(seed):
    aug = build_radiograph_augmentation(_all_on_cfg())
    img, box, mask = _fracture_and_mask(seed, BODY_PARTS[seed % len(BODY_PARTS)])
    assert mask.sum() > 5
    out = aug(image=img, bboxes=np.array([box], np.float32), labels=[0], mask=mask)
    assert out["image"].shape == img.shape and out["image"].dtype == np.uint8
    if len(out["bboxes"]) == 0:  # dropped: the fracture left the image (mostly)
        assert out["mask"].sum() < 0.5 * mask.sum() + 5
        return
    x0, y0, x1, y1 = out["bboxes"][0]
    ys, xs = np.nonzero(out["mask"])
    assert len(xs) > 0
    tol = 1.5  # interpolation of the warped mask
    assert xs.min() >= x0 - tol and xs.max() <= x1 + tol
    assert ys.min() >= y0 - tol and ys.max() <= y1 + tol


def _write_dict(tmp_path, img, boxes):
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), img)
    h, w = img.shape[:2]
    return {
        "file_name": str(path),
        "height": h,
        "width": w,
        "image_id": 1,
        "annotations": [
            {"bbox": list(b), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0}
            for b in boxes
        ],
    }


def test_mapper_train_and_test_paths(tmp_path):
    img, box, _ = _fracture_and_mask(1, "FOREARM")
    d = _write_dict(tmp_path, img, [box])
    cfg = _all_on_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST = (160,), 160
    out = RadiographMapper(cfg, is_train=True)(d)
    assert out["image"].shape[0] == 3 and min(out["image"].shape[1:]) == 160
    boxes = out["instances"].gt_boxes.tensor
    assert len(boxes) + out["aug_dropped_boxes"] == 1
    assert (boxes[:, 2] <= out["image"].shape[2]).all()
    test = RadiographMapper(cfg, is_train=False)(d)
    assert "instances" not in test and min(test["image"].shape[1:]) == 160
    # the test path is deterministic: resize only
    again = RadiographMapper(cfg, is_train=False)(d)
    assert (test["image"] == again["image"]).all()
    val = RadiographMapper(cfg, is_train=True, augment=False)(d)
    assert len(val["instances"]) == 1 and val["aug_dropped_boxes"] == 0


def test_sixteen_bit_is_scaled_not_truncated(tmp_path):
    ramp = np.tile(np.linspace(0, 4095, 256).astype(np.uint16), (8, 1))  # 12-bit in 16 bits
    path = tmp_path / "ramp16.png"
    cv2.imwrite(str(path), ramp)
    gray = read_radiograph(path)
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255
    assert np.all(np.diff(gray[0].astype(int)) >= 0) and len(np.unique(gray)) > 200
    assert to_uint8(np.full((2, 2), 7, np.uint16)).max() == 0


def test_colour_input_becomes_gray(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., :] = 100
    cv2.imwrite(str(tmp_path / "c.png"), rgb)
    gray = read_radiograph(tmp_path / "c.png")
    assert gray.shape == (20, 30) and int(gray[0, 0]) == 100


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        read_radiograph(bad)


def test_augmentation_can_be_switched_off():
    cfg = get_fracture_cfg()
    cfg.INPUT.RADIOGRAPH_AUG.ENABLED = False
    assert build_radiograph_augmentation(cfg) is None
