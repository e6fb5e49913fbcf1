"""tools/benchmark.py runs both paths and reports their numbers (a smoke run, not a timing)."""

import json

from conftest import run_script

SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


def test_benchmark_reports_stock_and_project(tmp_path):
    out = tmp_path / "bench.json"
    run_script(
        "tools/benchmark.py",
        "--config-file",
        SMOKE,
        "--patients",
        3,
        "--train-iters",
        1,
        "--rounds",
        1,
        "--warmup",
        1,
        "--infer-images",
        2,
        "--batch-size",
        2,
        "--profile",
        1,
        "--loader-batches",
        3,
        "--grad-clip-steps",
        2,
        "--out",
        out,
        "INPUT.MIN_SIZE_TEST",
        96,
        "FRACTURE.FAST.BATCHED_HEADS",
        "True",
        "FRACTURE.FAST.MATRIX_NMS",
        "True",
        "FRACTURE.FAST.METRICS_PERIOD",
        20,
        env={"DETECTRON2_DATASETS": str(tmp_path)},
    )
    r = json.loads(out.read_text())
    for path in ("stock", "project"):
        assert r["train"][path]["images_per_second"] > 0
        assert r["inference"][path]["batch1_latency_ms"] > 0
        assert r["inference"][path]["batch2_images_per_second"] > 0
    assert r["train"]["ratio"] > 0 and r["inference"]["latency_ratio"] > 0
    assert r["device"] == "cpu" and r["images_per_batch"] == 2
    # --loader-batches: both training loaders alone, 3 batches of 2 images per round
    for path in ("stock", "project"):
        assert r["loader"][path]["items"] == [6] and r["loader"][path]["images_per_second"] > 0
    assert r["loader"]["ratio"] > 0
    # --grad-clip-steps: both clippings on the smoke model's parameters, the same gradients
    gc = r["grad_clip"]
    assert gc["same_gradients"] and gc["parameter_tensors"] > 50 and gc["enabled"]  # as the demo
    assert gc["project"]["ops_per_step"] < gc["stock"]["ops_per_step"] / 5
    assert gc["stock"]["ms_per_step"] > 0 and gc["project"]["ms_per_step"] > 0
    # the profile: an operator table per path, and per-step counts of synchronising ops
    for path in ("stock", "project"):
        table = tmp_path / f"bench.{path}.txt"
        assert "Self CPU" in table.read_text()
        assert r["train"]["profile"][path]["table"] == str(table)
        assert r["train"]["profile"][path]["sync_ops_per_step"]["aten::nonzero"] > 0
    ops = {k: v["sync_ops_per_step"] for k, v in r["train"]["profile"].items()}
    waits = {k: v["aten::item"] + v["aten::nonzero"] for k, v in ops.items()}
    # FRACTURE.FAST.BATCHED_HEADS: about a third of stock's (the project without it: as many);
    # the rest is mostly torchvision's per-level NMS loop on CPUs, which varies with the boxes
    assert waits["project"] < 0.6 * waits["stock"]
    # dispatched operators per step (fewer with the switches: tests/test_matrix_nms.py)
    steps = {k: v["ops_per_step"] for k, v in r["train"]["profile"].items()}
    assert steps["project"] > 1000 and steps["stock"] > 1000
    assert all(r["inference"][k]["batch1_ops"] > 100 for k in ("stock", "project"))
    # --profile also counts the waits per batch-1 image: the matrix NMS needs far fewer
    image_waits = {
        k: sum(
            r["inference"][k]["batch1_sync_ops"].get(op, 0)
            for op in ("aten::item", "aten::nonzero")
        )
        for k in ("stock", "project")
    }
    assert image_waits["project"] < image_waits["stock"], image_waits

    # the README table from the JSON: one row per measure, ratios as measured
    table = run_script("tools/dev/benchmark_table.py", out).stdout.splitlines()
    assert table[0].startswith("| device | setting |")
    train_row = next(line for line in table if "training img/s" in line)
    assert f"| {r['train']['ratio']:.2f}x |" in train_row
    assert "faster_rcnn_R_18_FPN_smoke, batch 2, fp32, batched heads, matrix NMS" in train_row
    sync_row = next(line for line in table if "host syncs per training step" in line)
    assert f"| {round(waits['stock'])} | {round(waits['project'])} |" in sync_row
    assert any("inference batch 2, img/s" in line for line in table)
    loader_row = next(line for line in table if "training data loader alone" in line)
    assert f"| {r['loader']['ratio']:.2f}x |" in loader_row
    clip_row = next(line for line in table if "gradient clipping (norm, 90 tensors)" in line)
    assert f"{gc['stock']['ms_per_step']:.1f} / {gc['stock']['ops_per_step']} |" in clip_row
    ops_row = next(line for line in table if "operators per training step" in line)
    assert f"| {steps['stock']:.0f} | {steps['project']:.0f} |" in ops_row
    assert any("operators per image, batch 1" in line for line in table)
    wait_row = next(line for line in table if "host syncs per image, batch 1" in line)
    assert f"| {round(image_waits['stock'])} | {round(image_waits['project'])} |" in wait_row
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    proc = run_script("tools/dev/benchmark_table.py", bad, check=False)
    assert proc.returncode == 1 and "bad.json" in proc.stderr


def test_compile_counters_and_their_table_row(tmp_path):
    """A compiled run's JSON says how many graphs it compiled, where it broke and whether CUDA
    graphs were skipped (on a CPU every reduce-overhead graph is a skip)."""
    import torch

    from fracture_d2.speedbench.measure import compile_counters

    before = compile_counters()
    f = torch.compile(lambda x: (x * 2).relu() + 1, mode="reduce-overhead")
    f(torch.randn(8))
    f(torch.randn(8))  # same shape: no recompilation

    def broken(x):
        x = x + 1
        torch._dynamo.graph_break()
        return x * 2

    torch.compile(broken, backend="eager")(torch.randn(4))
    after = compile_counters()
    assert after["graphs"] - before["graphs"] == 3  # 1 + the two halves of `broken`
    assert after["graph_breaks"] - before["graph_breaks"] == 1
    if not torch.cuda.is_available():
        assert after["cudagraph_skips"] > before["cudagraph_skips"]

    out = tmp_path / "compiled.json"
    report = {"config": "configs/x.yaml", "images_per_batch": 1, "threads": 2}
    out.write_text(json.dumps({**report, "compile": after}))
    rows = run_script("tools/dev/benchmark_table.py", out).stdout.splitlines()
    row = next(line for line in rows if "CUDA-graph skips" in line)
    assert f"| {after['graphs']} / {after['graph_breaks']} / {after['cudagraph_skips']} |" in row


def test_nms_rounds_tool(datasets_root, tmp_path):
    """tools/dev/nms_rounds.py: a histogram of the rounds per image-level group, for each top-k."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from fracture_d2.config import get_fracture_cfg

    cfg = get_fracture_cfg()
    cfg.merge_from_file(SMOKE)
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), save_dir=str(tmp_path)).save("random")
    out = tmp_path / "rounds.json"
    proc = run_script(
        "tools/dev/nms_rounds.py",
        "--config-file",
        SMOKE,
        "--dataset",
        "mura_synthetic_val",
        "--images",
        3,
        "--pre-nms-topk",
        50,
        200,
        "--out",
        out,
        "MODEL.WEIGHTS",
        tmp_path / "random.pth",
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    r = json.loads(out.read_text())
    assert r["images"] == 3
    for k in ("50", "200"):
        hist = {int(t): n for t, n in r[k]["rounds"].items()}
        levels = 5  # P2-P6: every level of every image has candidates
        assert sum(hist.values()) == r[k]["groups"] == 3 * levels
        assert min(hist) >= 1 and r[k]["max"] == max(hist)
    assert "pre-NMS top-k 200" in proc.stdout


def test_device_busy_time_and_its_table_rows(tmp_path):
    """The GPU's busy time (union of its events' spans) and the table's share of the step; a
    CPU run has no GPU events (None), so its table has no such row."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from fracture_d2.speedbench.measure import device_busy_us

    def event(kind, start, end):
        return SimpleNamespace(device_type=kind, time_range=SimpleNamespace(start=start, end=end))

    gpu, cpu = DeviceType.CUDA, DeviceType.CPU
    # two overlapping kernels (streams) count once, a gap does not count, CPU events ignored
    events = [event(gpu, 10, 30), event(cpu, 0, 100), event(gpu, 20, 40), event(gpu, 60, 65)]
    assert device_busy_us(events) == 35
    assert device_busy_us([event(cpu, 0, 5)]) is None and device_busy_us([]) is None
    assert device_busy_us([object()]) is None  # unreadable events: logged, no number

    def leg(per_item):
        return {"images_per_second": 1 / per_item, "seconds_per_item": per_item}

    report = {
        "config": "configs/x.yaml",
        "gpu": "NVIDIA H200",
        "images_per_batch": 16,
        "amp": False,
        "train": {
            "stock": leg(0.02),  # 320 ms per step of 16
            "project": leg(0.01),
            "ratio": 2.0,
            "profile": {
                k: {"sync_ops_per_step": {}, "device_busy_ms_per_step": ms}
                for k, ms in (("stock", 96.0), ("project", 120.0))
            },
        },
        "inference": {
            "stock": {
                "batch1_latency_ms": 30.0,
                "batch1_device_busy_ms": 6.0,
                "batch16_images_per_second": 150.0,
            },
            "project": {
                "batch1_latency_ms": 10.0,
                "batch1_device_busy_ms": 5.0,
                "batch16_images_per_second": 300.0,
            },
            "latency_ratio": 1 / 3,
            "throughput_ratio": 2.0,
        },
    }
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(report))
    table = run_script("tools/dev/benchmark_table.py", path).stdout.splitlines()
    step = next(line for line in table if "GPU busy per training step" in line)
    assert "| 96.0 (30%) | 120.0 (75%) |" in step
    image = next(line for line in table if "GPU busy per batch-1 image" in line)
    assert "| 6.0 (20%) | 5.0 (50%) |" in image
