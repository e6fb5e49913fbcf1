#!/usr/bin/env python3
"""Speed of the project's training and inference path side by side with stock Detectron2.

Both run in this one process on the same config, data and device, warmed up, interleaved
(stock, project, stock, project, ...). Prints and writes JSON: img/s, s/iter, peak GPU memory,
batch-1 latency and batch-N throughput, and the ratios project/stock; optionally bbox AP of
both inference paths with the same weights; optionally the img/s of both training data loaders
alone (``--loader-batches``); optionally both gradient clippings alone (``--grad-clip-steps``).

Examples:
    python tools/benchmark.py --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml
    python tools/benchmark.py --config-file configs/MURA-Detection/faster_rcnn_R_50_FPN_3x.yaml \\
        --device cuda --out output/benchmark/h100_r50.json MODEL.WEIGHTS ""
    python tools/benchmark.py --skip-train \\
        --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml \\
        --eval-dataset mura_synthetic_test_all \\
        MODEL.WEIGHTS output/demo/model_final.pth
"""

import argparse
import json
import logging
import platform
import sys
import tempfile
from pathlib import Path

import torch

from fracture_d2.config import get_fracture_cfg
from fracture_d2.utils_io import write_json_atomic


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--device", default=None, help="cpu or cuda (default: the config's)")
    p.add_argument("--train-iters", type=int, default=10, help="steps per timed block")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per trainer first")
    p.add_argument("--rounds", type=int, default=3, help="timed blocks per path")
    p.add_argument("--infer-images", type=int, default=24, help="images per inference round")
    p.add_argument("--batch-size", type=int, default=8, help="inference batch for throughput")
    p.add_argument("--patients", type=int, default=30, help="synthetic patients (data)")
    p.add_argument("--eval-dataset", default="", help="also compare bbox AP on this dataset")
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile N training steps of each path (torch.profiler); tables go to "
        "OUT.{stock,project}.txt and per-step counts of synchronising ops into the JSON; "
        "and N batch-1 inference calls (synchronising ops per image)",
    )
    p.add_argument(
        "--loader-batches",
        type=int,
        default=0,
        metavar="N",
        help="also time N batches of each training data loader alone, no model (img/s the "
        "loaders deliver with DATALOADER.NUM_WORKERS; 0: skip)",
    )
    p.add_argument(
        "--grad-clip-steps",
        type=int,
        default=0,
        metavar="N",
        help="also time N calls of each gradient clipping (Detectron2's per parameter, the "
        "project's FUSED_GRAD_CLIP) on the config's model with random gradients (0: skip)",
    )
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-infer", action="store_true")
    p.add_argument("--out", default="output/benchmark/benchmark.json")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("fvcore").setLevel(logging.WARNING)
    import detectron2
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from fracture_d2.data.image_io import read_radiograph
    from fracture_d2.data.register import register_all
    from fracture_d2.speedbench.data import synthetic_benchmark_data
    from fracture_d2.speedbench.inference import accuracy, benchmark_inference
    from fracture_d2.speedbench.measure import compile_counters
    from fracture_d2.speedbench.training import (
        benchmark_grad_clip,
        benchmark_loader,
        benchmark_training,
    )

    tmp = tempfile.TemporaryDirectory()
    cfg = get_fracture_cfg()
    cfg.merge_from_file(a.config_file)
    cfg.merge_from_list(a.opts)
    if a.device:
        cfg.MODEL.DEVICE = a.device
    root = synthetic_benchmark_data(Path(tmp.name), a.patients)
    register_all(root)
    register_all()  # the user's $DETECTRON2_DATASETS, for --eval-dataset
    cfg.DATASETS.TRAIN = ("bench_synthetic_train",)
    if not cfg.MODEL.WEIGHTS or "://" in cfg.MODEL.WEIGHTS:
        # speed does not depend on the weights; a random init avoids any download
        cfg.MODEL.WEIGHTS = f"{tmp.name}/random_init.pth"
        DetectionCheckpointer(build_model(cfg), save_dir=tmp.name).save("random_init")
    cfg.freeze()
    report = {
        "config": a.config_file,
        "device": cfg.MODEL.DEVICE,
        "overrides": a.opts,
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if cfg.MODEL.DEVICE.startswith("cuda") else None,
        "images_per_batch": cfg.SOLVER.IMS_PER_BATCH,
        "amp": cfg.SOLVER.AMP.ENABLED and cfg.SOLVER.AMP.PRECISION,
        "loader_workers": cfg.DATALOADER.NUM_WORKERS,
        "weights": cfg.MODEL.WEIGHTS,
    }

    def save():  # after each stage: kept if a later one fails or runs out of time
        if cfg.FRACTURE.FAST.COMPILE_BACKBONE:
            report["compile"] = compile_counters()
        write_json_atomic(a.out, report, indent=2)

    if not a.skip_train:
        report["train"] = benchmark_training(
            cfg, a.train_iters, a.warmup, a.rounds, a.profile, str(Path(a.out).with_suffix(""))
        )
        save()
    if a.loader_batches > 0:
        report["loader"] = benchmark_loader(cfg, a.loader_batches, rounds=a.rounds)
        save()
    if a.grad_clip_steps > 0:
        report["grad_clip"] = benchmark_grad_clip(cfg, a.grad_clip_steps, rounds=a.rounds)
        save()
    if not a.skip_infer:
        from detectron2.data import DatasetCatalog

        dicts = DatasetCatalog.get("bench_synthetic_train")[: a.infer_images]
        grays = [read_radiograph(d["file_name"]) for d in dicts]
        report["inference"] = benchmark_inference(cfg, grays, a.batch_size, a.rounds, a.profile)
        save()
    if a.eval_dataset:
        report["accuracy"] = accuracy(cfg, a.eval_dataset, a.batch_size)
    save()
    print(json.dumps(report, indent=2))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
