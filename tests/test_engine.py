"""Training engine: hooks (best checkpoint, validation loss, early stop), sampler, precision
switches, atomic checkpoints, resume after SIGKILL, and 2-process (gloo) training."""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from unittest import mock

import pytest
import torch
from detectron2.utils.events import EventStorage

from fracture_d2.config import get_fracture_cfg
from fracture_d2.data.samplers import NegativeCapTrainingSampler
from fracture_d2.engine.checkpoint import AtomicPathManager
from fracture_d2.engine.hooks import EarlyStop, EarlyStopping
from fracture_d2.engine.trainer import Trainer
from fracture_d2.fast.precision import amp_dtype

from conftest import REPO, run_script

SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


def _metrics(out):
    return [json.loads(line) for line in open(out / "metrics.json")]


class _FakeTrainer:
    def __init__(self, max_iter):
        self.iter, self.max_iter, self.storage = 0, max_iter, EventStorage(0)


class _FakeCheckpointer:
    def __init__(self):
        self.saved = []

    def save(self, name, **kw):
        self.saved.append((name, kw))


def test_early_stopping_known_answer():
    trainer, ckpt = _FakeTrainer(100), _FakeCheckpointer()
    hook = EarlyStopping(10, "bbox/AP50", "max", patience=2, checkpointer=ckpt)
    hook.trainer = trainer
    values = [50.0, 60.0, 55.0, 59.0]  # best at the 2nd eval, then two without improvement
    for i, v in enumerate(values):
        trainer.iter = 10 * (i + 1) - 1
        trainer.storage.iter = trainer.iter
        trainer.storage.put_scalar("bbox/AP50", v, smoothing_hint=False)
        if i < len(values) - 1:
            hook.after_step()
        else:
            with pytest.raises(EarlyStop, match="did not improve for 2"):
                hook.after_step()
    assert hook.best == 60.0 and hook.stopped_at == 39
    assert ckpt.saved == [("model_final", {"iteration": 39})]
    resumed = EarlyStopping(10, "bbox/AP50", "max", 2, ckpt)
    resumed.load_state_dict(hook.state_dict())
    with pytest.raises(EarlyStop, match="nothing to resume"):
        resumed.before_train()


def test_negative_cap_sampler():
    dicts = [{"annotations": [1]}] * 10 + [{"annotations": []}] * 50
    sampler = NegativeCapTrainingSampler(dicts, 1.0, seed=0)
    it = iter(sampler)
    epochs = [[next(it) for _ in range(20)] for _ in range(3)]
    for e in epochs:
        assert sorted(i for i in e if i < 10) == list(range(10))
        assert len([i for i in e if i >= 10]) == 10
    assert len({i for e in epochs for i in e if i >= 10}) > 10  # fresh negatives each epoch
    with pytest.raises(ValueError, match="no positive"):
        NegativeCapTrainingSampler([{"annotations": []}], 1.0, seed=0)


def test_sampler_gives_image_label_only_positives_their_share():
    boxed = [{"annotations": [1], "image_label": 1}] * 5
    label_only = [{"annotations": [], "image_label": 1, "annotated": False}] * 30
    negatives = [{"annotations": [], "image_label": 0}] * 40
    dicts = boxed + label_only + negatives  # indices 0-4, 5-34, 35-74
    sampler = NegativeCapTrainingSampler(dicts, 1.0, seed=0, image_label_share=0.25)
    it = iter(sampler)
    stream = [next(it) for _ in range(400)]
    for batch in (stream[i : i + 8] for i in range(0, 400, 8)):
        assert sum(5 <= i < 35 for i in batch) == 2  # a quarter of every 8
    box_complete = [i for i in stream if not 5 <= i < 35]
    for e in range(0, 300, 10):  # epochs of 5 boxed + 5 (capped by boxed positives) negatives
        epoch = box_complete[e : e + 10]
        assert sorted(i for i in epoch if i < 5) == list(range(5)) and len(epoch) == 10
    assert set(i for i in stream if 5 <= i < 35) == set(range(5, 35))
    # without label-only images (a box-only model) the share has nothing to act on
    plain = NegativeCapTrainingSampler(boxed + negatives, 1.0, seed=0)
    shared = NegativeCapTrainingSampler(boxed + negatives, 1.0, seed=0, image_label_share=0.25)
    a, b = iter(plain), iter(shared)
    assert [next(a) for _ in range(50)] == [next(b) for _ in range(50)]
    assert shared.image_label_share == 0.0
    with pytest.raises(ValueError, match="IMAGE_LABEL_SHARE"):
        NegativeCapTrainingSampler(dicts, 1.0, seed=0, image_label_share=1.0)
    with pytest.raises(ValueError, match="no box-complete images"):  # not an endless wait
        NegativeCapTrainingSampler(label_only + negatives, 1.0, seed=0, image_label_share=0.25)
    # the share is a ceiling: 2 label-only images among 10 box-complete ones keep their 1/6
    few = NegativeCapTrainingSampler(
        boxed + label_only[:2] + negatives, 1.0, seed=0, image_label_share=0.25
    )
    assert few.image_label_share == pytest.approx(2 / 12)
    it = iter(few)
    assert sum(i in (5, 6) for i in (next(it) for _ in range(1200))) == 200


def test_precision_switches():
    cfg = get_fracture_cfg()
    assert amp_dtype(cfg) == torch.float16
    cfg.SOLVER.AMP.PRECISION = "bfloat16"
    assert amp_dtype(cfg) == torch.bfloat16
    cfg.SOLVER.AMP.PRECISION = "int8"
    with pytest.raises(ValueError, match="PRECISION"):
        amp_dtype(cfg)
    cfg.merge_from_file(str(REPO / SMOKE))
    cfg.SOLVER.AMP.ENABLED = True
    cfg.SOLVER.AMP.PRECISION = "bfloat16"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Trainer(cfg)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    from iopath.common.file_io import PathManager

    pm = AtomicPathManager(PathManager())
    target = tmp_path / "last_checkpoint"
    with pm.open(str(target), "w") as f:
        f.write("model_0000009.pth")
    with pytest.raises(RuntimeError):
        with pm.open(str(target), "w") as f:
            f.write("model_00")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "model_0000009.pth"
    assert [p.name for p in tmp_path.iterdir()] == ["last_checkpoint"]


def test_periodic_eval_best_checkpoint_and_val_loss(datasets_root, tmp_path):
    run_script(
        "tools/train_net.py",
        "--config-file",
        SMOKE,
        "OUTPUT_DIR",
        tmp_path,
        "SOLVER.MAX_ITER",
        6,
        "TEST.EVAL_PERIOD",
        2,
        "SOLVER.CHECKPOINT_PERIOD",
        100,
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    records = _metrics(tmp_path)
    evals = [r for r in records if "bbox/AP50" in r]
    assert [r["iteration"] for r in evals] == [1, 3, 6]  # the last one is logged at MAX_ITER
    assert all("val/total_loss" in r and "val/loss_cls" in r for r in evals)
    assert (tmp_path / "model_best.pth").is_file()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    best = torch.load(tmp_path / "model_best.pth", map_location="cpu", weights_only=False)
    # the first evaluation with the highest AP50 (the last one is saved after training, at
    # iteration MAX_ITER, so a best final model has iteration 6)
    aps = [(r["bbox/AP50"], r["iteration"]) for r in evals if not math.isnan(r["bbox/AP50"])]
    top = max(ap for ap, _ in aps)
    assert best["iteration"] == next(it for ap, it in aps if ap == top) and "model" in best
    assert any(f.name.startswith("events.out.tfevents") for f in tmp_path.iterdir())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_resume_after_sigkill(datasets_root, tmp_path):
    args = [
        sys.executable,
        str(REPO / "tools/train_net.py"),
        "--config-file",
        SMOKE,
        "OUTPUT_DIR",
        str(tmp_path),
        "SOLVER.MAX_ITER",
        "60",
        "SOLVER.CHECKPOINT_PERIOD",
        "10",
        "TEST.EVAL_PERIOD",
        "10",
        "SOLVER.STEPS",
        "(25, 45)",
        "SOLVER.BASE_LR",
        "0.01",
        # always computed, unlike AP of an early model that may predict nothing
        "SOLVER.BEST_CHECKPOINT.METRIC",
        "val/total_loss",
        "SOLVER.BEST_CHECKPOINT.MODE",
        "min",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "DETECTRON2_DATASETS": str(datasets_root)}
    proc = subprocess.Popen(
        args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    last_file = tmp_path / "last_checkpoint"
    # Kill once checkpoint 19 is tagged: it holds the best metric of the evaluation at 9.
    while not (last_file.exists() and last_file.read_text() == "model_0000019.pth"):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = last_file.read_text()
    assert last in ("model_0000019.pth", "model_0000029.pth")  # the kill may land a bit later
    ckpt = torch.load(tmp_path / last, map_location="cpu", weights_only=False)  # not truncated
    resume_from = ckpt["iteration"] + 1
    assert ckpt["trainer"]["hooks"]["BestModelCheckpointer"]["best_metric"] is not None

    done = subprocess.run(
        args[:4] + ["--resume"] + args[4:],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert f"Starting training from iteration {resume_from}" in log
    assert "Saved first model" not in log  # the best-metric state came back with the resume
    lrs = {r["iteration"]: r["lr"] for r in _metrics(tmp_path) if "lr" in r}
    assert lrs[59] == pytest.approx(0.01 * 0.1 * 0.1)  # scheduler state intact after resume
    assert lrs[39] == pytest.approx(0.01 * 0.1)
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"


def test_two_process_gloo_training(datasets_root, tmp_path):
    run_script(
        "tools/train_net.py",
        "--config-file",
        SMOKE,
        "--num-gpus",
        2,
        "--dist-url",
        f"tcp://127.0.0.1:{_free_port()}",
        "OUTPUT_DIR",
        tmp_path,
        "SOLVER.MAX_ITER",
        3,
        "SOLVER.CHECKPOINT_PERIOD",
        100,
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    assert "rank 0: ran iterations 0..3" in (tmp_path / "log.txt").read_text()
    assert "rank 1: ran iterations 0..3" in (tmp_path / "log.txt.rank1").read_text()
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_final.pth"]


def test_speed_switches_keep_weights_and_outputs():
    from detectron2.modeling import build_model

    from fracture_d2.fast import prepare_model

    cfg = get_fracture_cfg()
    cfg.merge_from_file(str(REPO / SMOKE))
    plain = build_model(cfg).eval()
    cfg.FRACTURE.FAST.CHANNELS_LAST = True
    cfg.FRACTURE.FAST.COMPILE_BACKBONE = True  # lazy: compiles on the first call, not run here
    compiled = prepare_model(build_model(cfg), cfg)
    assert list(compiled.state_dict()) == list(plain.state_dict())  # checkpoints stay usable
    modes = []
    with mock.patch.object(torch.nn.Module, "compile", lambda self, **kw: modes.append(kw)):
        cfg.FRACTURE.FAST.COMPILE_MODE = "reduce-overhead"
        prepare_model(build_model(cfg), cfg)
        cfg.FRACTURE.FAST.COMPILE_DYNAMIC = False
        prepare_model(build_model(cfg), cfg)
        cfg.FRACTURE.FAST.COMPILE_MODE = "fastest"
        with pytest.raises(ValueError, match="COMPILE_MODE"):
            prepare_model(build_model(cfg), cfg)
    cfg.FRACTURE.FAST.COMPILE_DYNAMIC = True
    # the mode as inductor's options (CUDA graphs), channels-last layouts with symbolic sizes
    graphs = {"triton.cudagraphs": True}
    assert modes == [
        {
            "backend": "inductor",
            "dynamic": True,
            "options": {**graphs, "force_layout_optimization": True},
        },
        {"backend": "inductor", "dynamic": None, "options": graphs},
    ]
    cfg.FRACTURE.FAST.COMPILE_BACKBONE = False
    nhwc = prepare_model(build_model(cfg), cfg).eval()
    nhwc.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 96, 128) * 255
    with torch.no_grad():
        a, b = plain.backbone(x), nhwc.backbone(x)
    assert b["p2"].is_contiguous(memory_format=torch.channels_last)
    for k in a:
        # same math, different convolution kernels: equal up to float32 rounding
        scale = float(a[k].abs().max())
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("dynamic,backend", [(True, "inductor"), (False, "aot_eager")])
def test_compiled_backbone_sizes(dynamic, backend):
    """COMPILE_DYNAMIC: one compile serves every input size of multi-scale training (forward and
    backward, the same values as eager), with inductor itself on the channels-last model of the
    project's default (whose convolution backward would otherwise fix strides per size:
    compile_backbone's layout option); without it Dynamo compiles again for new sizes (shown
    with a fast backend)."""
    from detectron2.modeling import build_model
    from torch._dynamo.utils import counters

    from fracture_d2.fast.model import compile_backbone

    if backend == "inductor" and not shutil.which(os.environ.get("CXX", "g++")):
        pytest.skip("inductor compiles C++ on the CPU: no compiler on this machine")
    cfg = get_fracture_cfg()
    cfg.merge_from_file(str(REPO / SMOKE))
    cfg.FRACTURE.FAST.COMPILE_DYNAMIC = dynamic
    torch.manual_seed(0)
    nhwc = torch.channels_last  # CHANNELS_LAST, as prepare_model does
    eager = build_model(cfg).train().to(memory_format=nhwc)
    compiled = build_model(cfg).train().to(memory_format=nhwc)
    compiled = compile_backbone(compiled, cfg, backend=backend)
    compiled.load_state_dict(eager.state_dict())
    torch._dynamo.reset()
    graphs = []
    for h, w in ((96, 128), (128, 96), (160, 192)):
        x = (torch.rand(2, 3, h, w) * 255).contiguous(memory_format=nhwc)
        out = compiled.backbone(x)
        ref = eager.backbone(x)
        for k in ref:
            torch.testing.assert_close(out[k], ref[k], rtol=1e-4, atol=1e-3)
        sum(v.float().mean() for v in out.values()).backward()
        graphs.append(counters["stats"]["unique_graphs"])
    if dynamic:
        assert graphs[0] >= 1 and graphs[-1] == graphs[0]
    else:
        assert graphs[-1] > graphs[0]


def test_inference_dtype_switch():
    from fracture_d2.fast.precision import inference_autocast, inference_dtype, native_bf16

    cfg = get_fracture_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.FRACTURE.FAST.INFERENCE_DTYPE = "auto"
    assert inference_dtype(cfg) == (torch.bfloat16 if native_bf16("cpu") else None)
    cfg.MODEL.DEVICE = "cuda:0"  # auto is float32 on GPUs (no GPU needed to decide)
    assert inference_dtype(cfg) is None
    cfg.MODEL.DEVICE = "cpu"
    cfg.FRACTURE.FAST.INFERENCE_DTYPE = "float32"
    assert inference_dtype(cfg) is None
    cfg.FRACTURE.FAST.INFERENCE_DTYPE = "bfloat16"
    with inference_autocast(cfg):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    cfg.FRACTURE.FAST.INFERENCE_DTYPE = "float16"
    with pytest.raises(ValueError, match="needs a GPU"):
        inference_dtype(cfg)
    cfg.FRACTURE.FAST.INFERENCE_DTYPE = "int8"
    with pytest.raises(ValueError, match="INFERENCE_DTYPE"):
        inference_dtype(cfg)
