"""Exported models (fracture_d2.export, tools/export_model.py): TorchScript and ONNX files
give the checkpoint's detections on images of other sizes than the traced one, carry their
identity, refuse a config they were not made for, and the service runs them."""

import hashlib
import runpy

import cv2
import pytest
import torch
from fastapi.testclient import TestClient
from serve_utils import encode, radiograph, wait_ready

from fracture_d2.data.errors import DataError
from fracture_d2.export import ExportedPredictor, compare, read_metadata
from fracture_d2.export.workflow import export_and_check
from fracture_d2.inference import BatchPredictor, load_cfg
from fracture_d2.serving import ServeSettings, create_app
from fracture_d2.serving.model import load_served_model

from conftest import REPO
from conftest import SMOKE_CONFIG as SMOKE

# Landscape, portrait, square and tiny: the trace saw only the first.
SHAPES = [(128, 96), (80, 120), (100, 100), (40, 30)]


@pytest.fixture(scope="module")
def cfg(smoke_weights):
    return load_cfg(SMOKE, ["MODEL.WEIGHTS", str(smoke_weights)])


@pytest.fixture(scope="module")
def images():
    return [radiograph(w, h, seed=k) for k, (w, h) in enumerate(SHAPES)]


@pytest.fixture(scope="module")
def checkpoint(cfg):
    return BatchPredictor(cfg)


@pytest.fixture(scope="module")
def exported(cfg, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return out, export_and_check(cfg, SMOKE, out, check_images=images)


def test_both_formats_match_the_checkpoint(exported, images):
    out, report = exported
    assert report["failed"] == {} and set(report["files"]) == {"torchscript", "onnx"}
    for fmt, parity in report["parity"].items():
        assert parity["ok"], (fmt, parity)
        assert parity["images"] == len(images) and parity["reference_boxes"] >= len(images)
        assert parity["matched"] == parity["reference_boxes"] == parity["other_boxes"]
        assert parity["min_iou"] >= 0.99 and parity["max_score_diff"] <= 1e-3
    assert (out / "export_report.json").is_file()


def test_parity_check_can_fail(checkpoint, images):
    reference = [checkpoint([g])[0] for g in images[:2]]
    moved = []
    for inst in reference:
        inst = inst[:]
        inst.pred_boxes.tensor = inst.pred_boxes.tensor + 2.0  # a few pixels off
        moved.append(inst)
    assert not compare(reference, moved).ok
    fewer = [inst[1:] for inst in reference]
    result = compare(reference, fewer)
    assert not result.ok and result.matched == result.other_boxes < result.reference_boxes


def test_metadata_and_a_config_it_was_not_made_for(exported, cfg, smoke_weights):
    out, _ = exported
    for name in ("model.ts", "model.onnx"):
        meta = read_metadata(out / name)
        assert (
            meta["source_weights_sha256"] == hashlib.sha256(smoke_weights.read_bytes()).hexdigest()
        )
        assert meta["min_size_test"] == 96 and meta["classes"] == [{"id": 1, "name": "fracture"}]
    other = load_cfg(SMOKE, ["INPUT.MIN_SIZE_TEST", "128", "MODEL.WEIGHTS", str(smoke_weights)])
    with pytest.raises(DataError, match="exported for another input"):
        ExportedPredictor(other, out / "model.onnx")
    torch.jit.save(torch.jit.script(torch.nn.Identity()), out / "plain.ts")
    with pytest.raises(DataError, match="export the model with tools/export_model.py"):
        read_metadata(out / "plain.ts")


def test_service_runs_the_exported_file(exported, cfg, checkpoint, images):
    out, _ = exported
    model = load_served_model(cfg, SMOKE, exported=str(out / "model.onnx"))
    with TestClient(create_app(lambda: model, ServeSettings(threshold=0.0))) as client:
        wait_ready(client)
        ident = client.get("/v1/model").json()
        assert ident["backend"] == "onnxruntime" and ident["weights_file"] == "model.onnx"
        assert (
            ident["weights_sha256"] == hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
        )
        assert ident["exported_from"]["source_weights"] == "model.pth"
        gray = images[1]
        body = client.post("/v1/predict", files={"file": ("p.png", encode(gray))}).json()
    want = checkpoint([gray])[0]
    assert body["image"]["n_boxes"] == len(want) > 0
    assert body["image"]["score"] == pytest.approx(float(want.scores.max()), abs=1e-3)


def test_export_tool(cfg, smoke_weights, tmp_path, images):
    cv2.imwrite(str(tmp_path / "a.png"), images[0])
    main = runpy.run_path(str(REPO / "tools/export_model.py"))["main"]
    args = ["--config-file", SMOKE, "--output", tmp_path / "out", "--format", "torchscript"]
    args += ["--check", tmp_path, "MODEL.WEIGHTS", smoke_weights]
    assert main([str(a) for a in args]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "export_report.json",
        "model.ts",
    ]
    assert main(["--config-file", SMOKE, "--output", str(tmp_path / "x")]) == 2  # no weights
