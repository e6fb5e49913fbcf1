#!/usr/bin/env python3
"""Measure the REST service against offline prediction on the same images and config.

In one run, for R rounds: tools/predict.py's code path (overlays off) over the images, then
tools/serve.py with batching and with --max-batch 1, each driven by K concurrent loopback
clients for S seconds. Prints requests/s, p50/p95/p99 latency and errors per leg and the
medians, and writes them as JSON with the machine's load average at each leg (other jobs on
the machine lower every number; legs of one round see about the same load).

Example:
    python tools/benchmark_serve.py \\
        --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml \\
        --images datasets/mura_synthetic/MURA-v1.1/valid --clients 16 --seconds 20 \\
        --output output/benchmark_serve.json MODEL.WEIGHTS output/demo/model_final.pth
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from fracture_d2.inference.cli import parse_with_opts


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True, metavar="FILE", help="model config (YAML)")
    p.add_argument(
        "--images", nargs="+", help="images/folders (default: synthetic radiographs, made here)"
    )
    p.add_argument("--max-images", type=int, default=200, help="use at most this many images")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (K)")
    p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per leg (S)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of offline/batched/batch-1 legs")
    p.add_argument("--max-batch", type=int, default=8, help="the batched server's --max-batch")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="its --max-wait-ms")
    p.add_argument("--batch-size", type=int, default=4, help="offline batch (predict.py's)")
    p.add_argument("--num-workers", type=int, default=2, help="offline readers (predict.py's)")
    p.add_argument("--output", default="output/benchmark_serve.json", help="JSON report")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    return parse_with_opts(p, argv)


def _synthetic(folder: Path, n: int, side: int) -> list[Path]:
    import cv2
    import numpy as np

    from fracture_d2.data.synth_radiograph import BODY_PARTS, render_radiograph

    rng, files = np.random.default_rng(0), []
    for k in range(n):
        w, h = (int(side * f) for f in rng.uniform(0.6, 1.0, 2))
        gray, _ = render_radiograph(BODY_PARTS[k % len(BODY_PARTS)], (w, h), k % 2, rng)
        files.append(folder / f"synthetic_{k:03d}.png")
        cv2.imwrite(str(files[-1]), gray)
    return files


def _print(report: dict) -> None:
    med = report["median_images_per_second"]
    for k, off in enumerate(report["legs"]["offline"]):
        print(f"round {k + 1}: offline {off['images_per_second']} img/s (load {off['load']:.1f})")
        for name in ("batched", "batch1"):
            s = report["legs"][name][k]
            lat = s["latency_ms"]
            print(
                f"  served {name:7s}: {s['requests_per_second']} req/s, p50/p95/p99 "
                f"{lat['p50']}/{lat['p95']}/{lat['p99']} ms, {s['errors']} errors, "
                f"mean batch {s['mean_batch_size']} (load {s['load']:.1f})"
            )
    print("median img/s: " + ", ".join(f"{k} {v}" for k, v in med.items()))
    ratios = {k: v for k, v in report["ratios"].items() if k != "per_round"}
    print("ratios of medians: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    for goal, met in report["goals"].items():
        print(f"goal {goal}: {'met' if met else 'MISSED'}")


def main(argv=None) -> int:
    args = parse_args(argv)
    from fracture_d2.inference import collect_inputs, load_cfg
    from fracture_d2.inference.predictor import check_weights
    from fracture_d2.serving.benchmark import run_benchmark
    from fracture_d2.utils_io import write_json_atomic

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    cfg = load_cfg(args.config_file, args.opts)
    try:
        check_weights(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"benchmark_serve: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            files = collect_inputs(args.images).files[: args.max_images]
        else:
            files = _synthetic(Path(tmp), min(64, args.max_images), 2 * cfg.INPUT.MIN_SIZE_TEST)
        if not files:
            print(f"benchmark_serve: no images in {' '.join(args.images)}", file=sys.stderr)
            return 2
        report = run_benchmark(
            cfg,
            args.config_file,
            args.opts,
            files,
            args.clients,
            args.seconds,
            args.max_batch,
            args.max_wait_ms,
            args.batch_size,
            args.num_workers,
            args.rounds,
        )
    report["command"] = ["tools/benchmark_serve.py", *(argv or sys.argv[1:])]
    write_json_atomic(args.output, report, indent=1)
    _print(report)
    print(f"benchmark_serve: report -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
