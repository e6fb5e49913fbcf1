"""tools/predict.py and the batched predictor: PNG + DICOM inputs, skips, JSON, overlays."""

import json

import cv2
import numpy as np
import pytest
import torch
from dicom_utils import write_dicom

from fracture_d2.data.image_io import to_uint8
from fracture_d2.data.mapper import RadiographMapper
from fracture_d2.inference import BatchPredictor, load_cfg, load_image
from fracture_d2.inference.cli import parse_with_opts
from fracture_d2.inference.run import overlay_names

from conftest import run_script

SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded, untrained smoke model: its box scores sit near 0.5, so it always predicts
    boxes, which is what the plumbing tests need (detection quality is not tested here)."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    out = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(load_cfg(SMOKE)), save_dir=str(out)).save("model")
    return out / "model.pth"


@pytest.fixture(scope="module")
def inputs(synthetic_raw, tmp_path_factory):
    """A folder with 2 PNGs, a 16-bit MONOCHROME1 DICOM, a multi-frame DICOM and a broken PNG."""
    root = tmp_path_factory.mktemp("scans")
    pngs = sorted((synthetic_raw / "MURA-v1.1" / "valid").rglob("*.png"))[:2]
    (root / "png").mkdir()
    for k, p in enumerate(pngs):
        (root / "png" / f"s{k}.png").write_bytes(p.read_bytes())
    gray = cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE)
    stored = ((255 - gray.astype(np.uint16)) * 16).astype(np.uint16)  # 12-bit, inverted
    write_dicom(root / "mono1.dcm", stored, "MONOCHROME1", bits_stored=12)
    write_dicom(root / "frames.dcm", np.stack([stored, stored]), bits_stored=12)
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_preprocess_matches_the_test_mapper(synthetic_raw, weights):
    cfg = load_cfg(SMOKE, ["MODEL.WEIGHTS", str(weights)])
    png = sorted((synthetic_raw / "MURA-v1.1" / "valid").rglob("*.png"))[0]
    gray = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    mapped = RadiographMapper(cfg, is_train=False)(
        {"file_name": str(png), "height": gray.shape[0], "width": gray.shape[1], "image_id": 0}
    )
    predictor = BatchPredictor(cfg)
    assert torch.equal(predictor.preprocess(gray)["image"], mapped["image"])
    one = predictor([gray])[0]
    two = predictor([gray, gray[:, ::-1].copy()])[0]  # batched with another image
    assert len(one) > 0
    torch.testing.assert_close(one.pred_boxes.tensor, two.pred_boxes.tensor, atol=1e-3, rtol=0)


def test_predict_folder_with_dicom_and_skips(inputs, weights, tmp_path):
    proc = run_script(
        "tools/predict.py",
        "--config-file",
        SMOKE,
        "--output",
        tmp_path,
        "--threshold",
        "0.3",
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--input",  # several values, then the overrides: split at the first config key
        inputs,
        "MODEL.WEIGHTS",
        weights,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr  # two files were skipped
    assert "frames.dcm: multi-frame DICOM (2 frames)" in proc.stdout
    assert "broken.png: cannot read image" in proc.stdout
    doc = json.loads((tmp_path / "predictions.json").read_text())
    names = [im["file_name"].split("/")[-1] for im in doc["images"]]
    assert names == ["mono1.dcm", "s0.png", "s1.png"]
    assert {s["file"].split("/")[-1] for s in doc["skipped"]} == {"frames.dcm", "broken.png"}
    assert doc["categories"] == [{"id": 1, "name": "fracture"}]
    ids = {im["id"] for im in doc["images"]}
    for r in doc["results"]:
        assert r["image_id"] in ids and r["category_id"] == 1 and r["score"] >= 0.3
        assert len(r["bbox"]) == 4 and r["bbox"][2] > 0 and r["bbox"][3] > 0
    for im in doc["images"]:
        boxes = [r for r in doc["results"] if r["image_id"] == im["id"]]
        assert im["n_boxes"] == len(boxes) and 0 <= im["score"] <= 1
        assert im["positive"] == (im["score"] >= 0.3)
        overlay = cv2.imread(str(tmp_path / im["overlay"]))
        assert overlay.shape[:2] == (im["height"], im["width"])
        assert overlay.std() > 5 and (overlay[:, :, 0] != overlay[:, :, 2]).any()  # coloured boxes
    # The inverted 12-bit MONOCHROME1 DICOM reads back as its PNG (stretched to 0..255).
    png = cv2.imread(str(inputs / "png" / "s0.png"), cv2.IMREAD_GRAYSCALE)
    expected = to_uint8(png.astype(np.float32))
    assert np.abs(load_image(inputs / "mono1.dcm").astype(int) - expected).max() <= 1


def test_predict_csv_allow_skips(inputs, weights, tmp_path):
    csv = tmp_path / "list.csv"
    csv.write_text("path\npng/s1.png\nmono1.dcm\nmissing.png\n")
    proc = run_script(
        "tools/predict.py",
        "--config-file",
        SMOKE,
        "--input",
        csv,
        "--root",
        inputs,
        "--output",
        tmp_path / "out",
        "--allow-skips",
        "--no-overlays",
        "MODEL.WEIGHTS",
        weights,
    )
    assert "list.csv:4" in proc.stdout and "file not found" in proc.stdout
    doc = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [im["id"] for im in doc["images"]] == [1, 2]
    assert not (tmp_path / "out" / "overlays").exists()


def test_predict_refuses_a_model_without_weights(inputs, tmp_path):
    proc = run_script(
        "tools/predict.py",
        "--config-file",
        SMOKE,
        "--input",
        inputs,
        "--output",
        tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "MODEL.WEIGHTS is empty" in proc.stderr


def test_config_overrides_split_from_multi_value_options():
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--input", nargs="+")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    a = parse_with_opts(p, ["--input", "IM0001", "b.dcm", "SEED", "1", "MODEL.WEIGHTS", "m.pth"])
    assert a.input == ["IM0001", "b.dcm"] and a.opts == ["SEED", "1", "MODEL.WEIGHTS", "m.pth"]
    with pytest.raises(SystemExit):
        parse_with_opts(p, ["--input", "a.png", "MODEL.WEIGHTS", "m.pth", "--threshold", "1"])


def test_overlay_names_are_unique_and_mirror_folders(tmp_path):
    files = [tmp_path / "a" / "x.png", tmp_path / "a" / "x.dcm", tmp_path / "b" / "x.png"]
    names = [str(n) for n in overlay_names(files)]
    assert names == ["a/x.png", "a/x.dcm.png", "b/x.png"]
