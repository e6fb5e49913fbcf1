#!/usr/bin/env python3
"""The demo, end to end on synthetic MURA-layout data, from scratch and offline.

generate (datasets/generate_synthetic_mura.py) -> prepare (datasets/prepare_mura.py)
-> train (tools/train_net.py, ending with COCO evaluation on the synthetic test split)
-> evaluate (tools/evaluate.py: FROC, image- and study-level metrics, report.md)
-> visualize (tools/visualize.py: panels, heatmaps, curves, index.html).

Each step is the command a user would type; they are printed as they run. Trailing
``KEY VALUE`` pairs go to train_net.py (e.g. ``SOLVER.MAX_ITER 100`` for a quicker look).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml"
TEST_SET = "mura_synthetic_test_all"  # every test image (box metrics skip unannotated ones)
AP50_GOAL = 60.0


def _final_metrics(output_dir: Path) -> dict:
    from fracture_d2.utils_io import read_training_metrics

    evals = [
        r for r in read_training_metrics(output_dir / "metrics.json").values() if "bbox/AP50" in r
    ]
    if not evals:
        raise SystemExit(f"demo: no bbox metrics in {output_dir / 'metrics.json'}")
    return evals[-1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--patients", type=int, default=240, help="synthetic patients to generate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default="output/demo")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for train_net.py")
    a = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from fracture_d2.data.register import datasets_root
    from fracture_d2.steps import run_step

    data, out = datasets_root() / "mura_synthetic", Path(a.output_dir)
    steps = demo_steps(data, out, a.patients, a.seed, a.opts)
    times = {name: run_step(f"{name}: {what}", cmd, who="demo") for name, what, cmd in steps}
    return report(times, data, out)


def demo_steps(data: Path, out: Path, patients: int, seed: int, opts: list) -> list[tuple]:
    """generate, prepare, train, evaluate, visualize: ``(step, description, command)``."""
    from fracture_d2.steps import synthetic_data_steps, train_command

    preds = out / "inference" / TEST_SET / "coco_instances_results.json"
    evaluate = ["tools/evaluate.py", "--dataset", TEST_SET, "--predictions", preds]
    visualize = ["tools/visualize.py", "--dataset", TEST_SET, "--predictions", preds]
    visualize += ["--metrics", out / "metrics.json", "--eval-dir", out / "evaluation"]
    visualize += ["--output", out / "visualizations", "--config-file", CONFIG]
    return synthetic_data_steps(data, "mura_synthetic", patients, seed) + [
        (
            "train",
            f"from scratch on CPU, then evaluation on {TEST_SET}",
            train_command(CONFIG, out, opts),
        ),
        (
            "evaluate",
            "FROC, image/study level with CIs, per body part",
            evaluate + ["--out", out / "evaluation"],
        ),
        (
            "visualize",
            "panels, heatmaps, curves, index.html",
            visualize + ["MODEL.WEIGHTS", out / "model_final.pth"],
        ),
    ]


def report(times: dict, data: Path, out: Path) -> int:
    """Print where everything went and the AP; 1 if AP50 missed the goal."""
    preds = out / "inference" / TEST_SET / "coco_instances_results.json"
    m = _final_metrics(REPO / out)
    print("\n=== demo: done")
    print("  step times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    print(
        f"  bbox AP {m['bbox/AP']:.1f} | AP50 {m['bbox/AP50']:.1f} | AP75 {m['bbox/AP75']:.1f}"
        f"  on {TEST_SET} (goal AP50 >= {AP50_GOAL:.0f})"
    )
    print(f"  data:        {data}")
    print(f"  model:       {out / 'model_final.pth'}")
    print(f"  metrics:     {out / 'metrics.json'} (TensorBoard: tensorboard --logdir {out})")
    print(f"  predictions: {preds}")
    print(f"  evaluation:  {out / 'evaluation' / 'report.md'}")
    print(f"  pictures:    {out / 'visualizations' / 'index.html'}  <- open this")
    if m["bbox/AP50"] < AP50_GOAL:
        print(
            f"demo: AP50 {m['bbox/AP50']:.1f} is below the goal of {AP50_GOAL:.0f}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
