"""Static-shape inference (fracture_d2.fast.static) against Detectron2's forward."""

import logging

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from fracture_d2.config import get_fracture_cfg
from fracture_d2.fast.static import StaticRCNN, check_static_model, static_predict
from fracture_d2.inference import BatchPredictor, load_cfg
from fracture_d2.speedbench.measure import sync_counts

SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


def smoke_cfg(*opts):
    cfg = get_fracture_cfg()
    cfg.merge_from_file(SMOKE)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # a random model: keep every detection
    cfg.TEST.DETECTIONS_PER_IMAGE = 40
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(smoke_cfg()).eval()


def batch():
    g = torch.Generator().manual_seed(0)
    return [
        {"image": torch.rand(3, 128, 160, generator=g) * 255, "height": 256, "width": 320},
        {"image": torch.rand(3, 96, 128, generator=g) * 255},  # padded to the first's size
    ]


def assert_same(ref, out):
    assert len(ref) == len(out)
    for a, b in zip(ref, out, strict=True):
        a, b = a["instances"].to("cpu"), b["instances"]
        assert a.image_size == b.image_size and len(a) == len(b) > 5
        torch.testing.assert_close(b.pred_boxes.tensor, a.pred_boxes.tensor, rtol=0, atol=1e-4)
        torch.testing.assert_close(b.scores, a.scores, rtol=0, atol=1e-6)
        assert torch.equal(a.pred_classes, b.pred_classes)


def test_static_forward_gives_detectron2s_detections(model):
    inputs = batch()
    with torch.no_grad():
        ref = model(inputs)
        out = static_predict(model, StaticRCNN(model), inputs)
    assert_same(ref, out)


def test_static_forward_compiles_as_one_graph(model):
    """fullgraph=True fails on any graph break: the whole forward is one graph, which is what
    CUDA-graph capture (COMPILE_MODE reduce-overhead) needs. The eager backend keeps the test
    fast; it traces exactly what inductor would compile."""
    # the model has the batched heads (cached anchors, batched RPN, ...), switched on
    on = build_model(
        smoke_cfg("FRACTURE.FAST.BATCHED_HEADS", True, "FRACTURE.FAST.MATRIX_NMS", True)
    )
    on.load_state_dict(model.state_dict())
    on.eval()
    compiled = torch.compile(StaticRCNN(on), backend="eager", fullgraph=True, dynamic=False)
    inputs = batch()
    with torch.no_grad():
        assert_same(model(inputs), static_predict(on, compiled, inputs))


def test_static_forward_never_waits_for_the_device(model):
    """No operator whose result the host must read (a GPU sync): nonzero, .item(), equal, ..."""
    from torch.utils._python_dispatch import TorchDispatchMode

    waits = {"nonzero", "_local_scalar_dense", "equal", "masked_select", "_unique2", "is_nonzero"}
    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    images = torch.rand(2, 3, 128, 160) * 100
    sizes = torch.tensor([[128.0, 160.0], [100.0, 120.0]])
    static = StaticRCNN(model)
    with torch.no_grad(), Record():
        static(images, sizes)
    assert len(seen) > 300 and not waits & set(seen)
    # the profiler also records what C++ code calls below Python's dispatch (.item() etc.)
    with torch.no_grad():
        assert sync_counts(lambda: static(images, sizes), 1, cuda=False) == ({}, None)
        calls, _ = sync_counts(lambda: static_predict(model, static, batch()), 1, cuda=False)
    assert calls.get("aten::nonzero", 0) > 0  # the host-side post-processing is counted


def test_unconverged_nms_falls_back_to_the_model(model, caplog):
    inputs = batch()
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="fracture_d2"):
        out = static_predict(model, StaticRCNN(model, nms_rounds=1), inputs)
        ref = model(inputs)
    assert "did not converge" in caplog.text
    assert_same(ref, out)


def test_padding_to_a_multiple(model):
    shapes = []
    static = StaticRCNN(model)

    def forward(images, sizes):
        shapes.append(tuple(images.shape[-2:]))
        return static(images, sizes)

    with torch.no_grad():
        out = static_predict(model, forward, batch(), pad=96)
    assert shapes == [(192, 192)]  # 128 x 160 -> multiples of 96
    assert [o["instances"].image_size for o in out] == [(256, 320), (96, 128)]


def test_unsupported_models_are_refused():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="box detection only"):
        check_static_model(build_model(smoke_cfg("MODEL.MASK_ON", True)))
    with pytest.raises(ValueError, match="GeneralizedRCNN"):
        StaticRCNN(torch.nn.Linear(2, 2))


def test_predictor_inference_model(model, tmp_path):
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")
    opts = ["MODEL.WEIGHTS", str(tmp_path / "model.pth"), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
    opts += ["FRACTURE.FAST.INFERENCE_DTYPE", "float32"]
    g = torch.Generator().manual_seed(3)
    grays = [(torch.rand(90, 120, generator=g) * 255).byte().numpy() for _ in range(2)]
    ref = BatchPredictor(load_cfg(SMOKE, opts))(grays)
    out = BatchPredictor(load_cfg(SMOKE, opts + ["FRACTURE.FAST.STATIC_INFERENCE", True]))(grays)
    assert_same([{"instances": r} for r in ref], [{"instances": o} for o in out])


def test_inference_model_wraps_caches_and_passes_training_through(model):
    from fracture_d2.fast.static import StaticInferenceModel, inference_model

    off, on = smoke_cfg(), smoke_cfg("FRACTURE.FAST.STATIC_INFERENCE", True)
    assert inference_model(model, off) is model
    wrapped = inference_model(model, on)
    assert isinstance(wrapped, StaticInferenceModel)
    assert inference_model(model, on) is wrapped  # cached: compiled graphs are reused

    class DDPLike(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert inference_model(DDPLike(model), on) is wrapped
    # the wrapper registers the model once: the same parameters, no copies
    assert len(list(wrapped.parameters())) == len(list(model.parameters()))
    inputs = batch()
    with torch.no_grad():
        assert_same(model(inputs), wrapped.eval()(inputs))
    wrapped.train()
    assert model.training
    with pytest.raises(AssertionError):  # the model's own training forward: needs instances
        wrapped(inputs)
    wrapped.eval()


def test_trainer_evaluates_through_static_inference(model, monkeypatch):
    from detectron2.engine import DefaultTrainer

    from fracture_d2.engine.trainer import Trainer
    from fracture_d2.fast.static import StaticInferenceModel

    seen = []
    monkeypatch.setattr(
        DefaultTrainer, "test", classmethod(lambda cls, cfg, m, ev=None: seen.append(m) or {})
    )
    Trainer.test(smoke_cfg("FRACTURE.FAST.STATIC_INFERENCE", True), model)
    Trainer.test(smoke_cfg(), model)
    assert isinstance(seen[0], StaticInferenceModel) and seen[1] is model
