"""The REST service (fracture_d2.serving, tools/serve.py): every endpoint, every refusal,
batching, the bounded queue, the token, and one real uvicorn process."""

import base64
import hashlib
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import cv2
import httpx
import numpy as np
import pydicom
import pytest
import torch
from detectron2.structures import Boxes, Instances
from fastapi.testclient import TestClient
from serve_utils import (
    dicom_bytes,
    dicom_without_pixels,
    encode,
    radiograph,
    wait_ready,
)

from fracture_d2.inference import load_cfg, load_image
from fracture_d2.inference.results import image_prediction
from fracture_d2.serving import LoadedModel, ServeSettings, create_app
from fracture_d2.serving.loadtest import drive, server_process
from fracture_d2.serving.model import load_served_model

from conftest import SMOKE_CONFIG as SMOKE

MIXED_SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_mixed_smoke.yaml"

LIMITS = {"max_pixels": 200_000, "max_upload_bytes": 300_000}
SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: a DICOM file that is no image


@pytest.fixture(scope="module")
def served(smoke_weights) -> LoadedModel:
    """The checkpoint as the service loads it (shared by every app in this module)."""
    return load_served_model(load_cfg(SMOKE, ["MODEL.WEIGHTS", str(smoke_weights)]), SMOKE)


@contextmanager
def running(loader, wait: bool = True, **settings):
    """A TestClient on a fresh app (lifespan run), ready unless ``wait=False``."""
    with TestClient(create_app(loader, ServeSettings(**settings))) as client:
        if wait:
            wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def client(served):
    with running(lambda: served, **LIMITS) as c:
        yield c


def post(client, data: bytes, name: str = "scan.png", field: str = "file", **params):
    return client.post("/v1/predict", params=params, files={field: (name, data)})


def test_health_ready_and_model_identity(client, smoke_weights):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True
    ident = client.get("/v1/model").json()
    assert ident["weights_sha256"] == hashlib.sha256(smoke_weights.read_bytes()).hexdigest()
    assert ident["config_name"] == "faster_rcnn_R_18_FPN_smoke"
    assert ident["classes"] == [{"id": 1, "name": "fracture"}]
    assert ident["thresholds"]["default"] == 0.5 and ident["backend"] == "pytorch"
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_png_answer_is_the_predictors(client, served):
    gray = radiograph(120, 96)
    inst = served.predict([gray])[0]["instances"]
    for thr in (0.0, 0.5, 1.0):
        body = post(client, encode(gray), "a.png", threshold=thr).json()
        want = image_prediction(inst, 1, "a.png", gray.shape, thr)
        assert body["image"] == {**want.entry, "head_score": None}  # a model without the head
        assert body["results"] == want.results
        assert body["threshold"] == thr and body["dicom"] is None
        assert body["model"] == client.get("/v1/model").json()
    assert len(want.results) == 0 < len(image_prediction(inst, 1, "a", gray.shape, 0).results)


def test_16bit_png_jpeg_and_dicom(client, served, tmp_path):
    gray = radiograph(100, 128, seed=1)
    wide = (gray.astype(np.uint16) * 257).astype(np.uint16)
    for name, data in (("w.png", encode(wide)), ("j.jpg", encode(gray, ".jpg"))):
        body = post(client, data, name).json()
        assert (body["image"]["width"], body["image"]["height"]) == (100, 128), body
    stored = ((255 - gray.astype(np.uint16)) * 16).astype(np.uint16)  # 12-bit, inverted
    dicoms = {
        "m1.dcm": {"photometric": "MONOCHROME1", "bits_stored": 12},
        "ct.dcm": {"slope": 2.0, "intercept": -1024.0, "window": (1000.0, 3000.0)},
    }
    for name, options in dicoms.items():
        body = post(client, dicom_bytes(tmp_path, name, stored, **options), name).json()
        ds = pydicom.dcmread(tmp_path / name)
        assert body["dicom"] == {
            "study_instance_uid": ds.StudyInstanceUID,
            "series_instance_uid": ds.SeriesInstanceUID,
            "sop_instance_uid": ds.SOPInstanceUID,
        }
        # the project's loader decides the pixels (rescale, window, MONOCHROME1)
        inst = served.predict([load_image(tmp_path / name)])[0]["instances"]
        want = image_prediction(inst, 1, name, (128, 100))
        assert body["image"] == {**want.entry, "head_score": None}
        assert body["results"] == want.results


def test_overlay_png(client):
    body = post(client, encode(radiograph(90, 80)), overlay="true").json()
    png = cv2.imdecode(np.frombuffer(base64.b64decode(body["overlay_png"]), np.uint8), 1)
    assert png.shape == (80, 90, 3)
    assert post(client, encode(radiograph(90, 80))).json()["overlay_png"] is None


def noise() -> np.ndarray:
    """400 x 250 pixels of noise: a PNG of about 100 kB (noise does not compress)."""
    return np.random.default_rng(0).integers(0, 255, (400, 250), np.uint8)


def _bad_uploads(tmp_path) -> list:
    png, jpg = encode(radiograph()), encode(radiograph(), ".jpg")
    frames = np.zeros((2, 16, 16), np.uint16)
    return [
        ("empty.png", b"", 400, "empty_upload"),
        ("notes.png", b"just some text, not an image", 415, "unsupported_type"),
        ("cut.png", png[: len(png) // 2], 422, "truncated_image"),
        ("cut.jpg", jpg[: len(jpg) // 2], 422, "truncated_image"),
        ("junk.png", png[:40] + b"\0" * 200 + png[-12:], 422, "unreadable_image"),
        ("bomb.png", encode(np.zeros((1000, 1000), np.uint8)), 413, "too_many_pixels"),
        ("big.png", encode(np.hstack([noise()] * 3)), 413, "too_large"),  # > limit, < limit+slack
        ("frames.dcm", dicom_bytes(tmp_path, "f.dcm", frames), 422, "dicom_multiframe"),
        (
            "nopix.dcm",
            dicom_without_pixels(tmp_path, "n.dcm", "1.2.840.10008.5.1.4.1.1.7"),
            422,
            "dicom_no_pixels",
        ),
        ("sr.dcm", dicom_without_pixels(tmp_path, "s.dcm", SR_STORAGE), 422, "dicom_not_image"),
    ]


def test_bad_uploads_get_4xx_json_and_the_server_keeps_serving(client, tmp_path):
    for name, data, status, kind in _bad_uploads(tmp_path):
        r = post(client, data, name)
        assert (r.status_code, r.json()["error"]) == (status, kind), (name, r.text)
        assert name in r.json()["detail"], r.json()
    r = post(client, encode(np.hstack([noise()] * 8)), "huge.png")  # refused before reading
    assert (r.status_code, r.json()["error"]) == (413, "too_large")
    assert "over the upload limit of 300000 bytes" in r.json()["detail"]
    r = client.post(  # the same without Content-Length: refused once the bytes pass the limit
        "/v1/predict",
        content=(b"x" * 50_000 for _ in range(10)),
        headers={"Content-Type": "multipart/form-data; boundary=zzz"},
    )
    assert (r.status_code, r.json()["error"]) == (413, "too_large"), r.text
    r = post(client, encode(radiograph()), field="image")
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request")
    assert "'file'" in r.json()["detail"]
    assert post(client, encode(radiograph()), threshold=1.5).status_code == 422
    assert post(client, encode(radiograph())).status_code == 200
    metrics = client.get("/metrics").text
    for kind in ("unsupported_type", "too_many_pixels", "dicom_multiframe", "invalid_request"):
        assert f'fracture_d2_errors_total{{kind="{kind}"}}' in metrics
    assert 'fracture_d2_requests_total{path="/v1/predict",status="415"} 1.0' in metrics
    assert 'fracture_d2_requests_total{path="/v1/predict",status="413"} 4.0' in metrics
    assert "fracture_d2_request_seconds_bucket" in metrics
    assert "fracture_d2_batch_size_count" in metrics


def test_uploads_live_only_in_a_temp_dir(served, tmp_path, monkeypatch):
    import fracture_d2.serving.upload as upload

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    seen = []
    monkeypatch.setattr(upload, "load_image", lambda p: seen.append(p) or load_image(p))
    with running(lambda: served) as c:
        assert post(c, encode(radiograph())).status_code == 200
        assert post(c, dicom_bytes(tmp_path, "a.dcm", radiograph()), "a.dcm").status_code == 200
        assert post(c, b"\x89PNG\r\n\x1a\n broken", "b.png").status_code == 422
    assert len(seen) == 2 and all(p.is_relative_to(tmp_path / "tmp") for p in seen)
    assert not any(p.exists() for p in seen)
    assert list((tmp_path / "tmp").iterdir()) == []


def _box_of_its_size(grays):
    """A fake model's output: one box covering each image (tells the images apart)."""
    out = []
    for g in grays:
        inst = Instances(g.shape)
        inst.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, g.shape[1], g.shape[0]]]))
        inst.scores, inst.pred_classes = torch.tensor([0.9]), torch.tensor([0])
        out.append(inst)
    return out


def test_concurrent_requests_share_one_batch(served):
    sizes = []

    def predict(grays):
        sizes.append(len(grays))
        return _box_of_its_size(grays)

    model = LoadedModel(predict, served.identity, (64, 64))
    with running(lambda: model, max_batch=4, max_wait_ms=2000) as c:
        shapes = [(60 + 10 * k, 50 + 5 * k) for k in range(4)]
        with ThreadPoolExecutor(4) as pool:
            bodies = list(pool.map(lambda s: post(c, encode(radiograph(*s))).json(), shapes))
        assert sizes == [1, 4]  # the warm-up, then all four requests at once
        for (w, h), body in zip(shapes, bodies, strict=True):
            assert body["timing"]["batch_size"] == 4
            assert body["results"][0]["bbox"] == [0.0, 0.0, float(w), float(h)]
    with running(lambda: model, max_batch=4, max_wait_ms=50) as c:  # alone: waits T, then runs
        timing = post(c, encode(radiograph())).json()["timing"]
        assert timing["batch_size"] == 1 and 40 <= timing["queue_ms"] < 1500


def test_full_queue_answers_503_with_retry_after(served):
    warmed, holding, gate = threading.Event(), threading.Event(), threading.Event()

    def predict(grays):
        if warmed.is_set():  # not the warm-up: hold the batch until the test lets it go
            holding.set()
            gate.wait(30)
        warmed.set()
        return _box_of_its_size(grays)

    model = LoadedModel(predict, served.identity, (64, 64))
    with running(lambda: model, max_batch=1, max_wait_ms=0, queue_size=1) as c:
        queue = c.app.state.service.queue
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, c, encode(radiograph()))
            assert holding.wait(30)  # the worker computes the first request
            second = pool.submit(post, c, encode(radiograph()))
            while queue.depth() != 1:  # the second waits in the queue, which is now full
                threading.Event().wait(0.01)
            r = post(c, encode(radiograph()))
            gate.set()
            assert (r.status_code, r.json()["error"]) == (503, "queue_full")
            assert int(r.headers["Retry-After"]) >= 1
            assert first.result().status_code == second.result().status_code == 200
            assert "fracture_d2_queue_depth 0.0" in c.get("/metrics").text


def test_bearer_token(served):
    with running(lambda: served, token="s3cret") as c:
        assert c.get("/healthz").status_code == 200 and c.get("/metrics").status_code == 200
        r = post(c, encode(radiograph()))
        assert (r.status_code, r.json()["error"]) == (401, "unauthorized")
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert c.get("/v1/model", headers={"Authorization": "Bearer guess"}).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert c.get("/v1/model", headers=ok).status_code == 200
        assert c.post("/v1/predict", files={"file": encode(radiograph())}, headers=ok).is_success


def test_not_ready_until_loaded_and_load_failure_reported(served):
    release = threading.Event()

    def slow():
        release.wait(30)
        return served

    with running(slow, wait=False) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json() == {"ready": False, "detail": "loading the model"}
        r = post(c, encode(radiograph()))
        assert (r.status_code, r.json()["error"]) == (503, "not_ready")
        release.set()
        wait_ready(c)
        assert post(c, encode(radiograph())).status_code == 200

    def broken():
        raise FileNotFoundError("model.pth: checkpoint not found")

    with running(broken, wait=False) as c:
        for _ in range(200):
            if "failed" in c.get("/readyz").json()["detail"]:
                break
            threading.Event().wait(0.01)
        r = c.get("/readyz")
        assert r.status_code == 503 and "checkpoint not found" in r.json()["detail"]


def test_real_uvicorn_process(smoke_weights, tmp_path):
    """tools/serve.py as users start it, with the token from the environment."""
    args = ["--config-file", SMOKE, "--log-level", "warning", "MODEL.WEIGHTS", str(smoke_weights)]
    token = {"Authorization": "Bearer t0ken"}
    with (
        server_process(args, timeout=120, env={"FRACTURE_D2_TOKEN": "t0ken"}) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        png = ("x.png", encode(radiograph()))
        assert http.post("/v1/predict", files={"file": png}).status_code == 401
        r = http.post("/v1/predict", files={"file": png}, headers=token)
        assert r.status_code == 200 and r.json()["image"]["width"] == 112
        txt = ("x.txt", b"hi")
        assert http.post("/v1/predict", files={"file": txt}, headers=token).status_code == 415
        assert "fracture_d2_requests_total" in http.get("/metrics").text
        # the benchmark's load generator: 4 clients for 1 s, every answer a 200
        stats = drive(url, [png], clients=4, seconds=1, warmup=0.2, headers=token)
        assert stats["requests"] > 0 and stats["errors"] == 0, stats
        assert stats["latency_ms"]["p50"] <= stats["latency_ms"]["p99"]


def test_a_mixed_supervision_model_answers_with_its_head(smoke_weights):
    """A MixedSupervisionRCNN model's answer carries its image-level head's probability, and
    ``--image-score head`` scores the image by it."""
    cfg = load_cfg(MIXED_SMOKE, ["MODEL.WEIGHTS", str(smoke_weights)])
    model = load_served_model(cfg, MIXED_SMOKE, score_method="head")
    gray = radiograph(120, 96)
    out = model.predict([gray])[0]
    with running(lambda: model, score_method="head") as c:
        body = post(c, encode(gray), "a.png").json()
    assert 0.0 < body["image"]["head_score"] < 1.0
    assert body["image"]["head_score"] == round(out["head_score"], 5) == body["image"]["score"]
