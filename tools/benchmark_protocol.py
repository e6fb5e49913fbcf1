#!/usr/bin/env python3
"""The benchmark protocol end to end on synthetic MURA-layout data, in one command:

generate + prepare (datasets/generate_synthetic_mura.py, prepare_mura.py) -> 3 patient-grouped
folds (datasets/make_folds.py) -> sweep of 2 configs x 3 seeds x 3 folds (tools/sweep.py,
sweeps/synthetic_protocol.yaml: Faster R-CNN vs RetinaNet, quick CPU schedules) -> comparison
(tools/compare_runs.py --paired: mean ± sd and 95% CIs over runs, paired patient bootstrap,
DeLong, paired t-test across seeds and folds) -> the table, printed and in OUT/comparison/.

Each step is the command a user would type; they are printed as they run. The data live in
OUT/datasets (their own $DETECTRON2_DATASETS), the runs in OUT/runs; finished runs are kept,
so running it again only redoes what is missing. Trailing arguments go to tools/sweep.py
(e.g. --launcher slurm --partition gpu to run the same sweep on a cluster).

Example:
    python tools/benchmark_protocol.py --out output/protocol
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP = "sweeps/synthetic_protocol.yaml"
CONFIGS = ("faster_rcnn_R18", "retinanet_R18")
TEST_SET = "mura_synthetic_test_all"


def _run(step: str, cmd: list, env: dict) -> float:
    print(f"\n=== protocol: {step}\n$ {shlex.join(str(c) for c in cmd)}", flush=True)
    t = time.time()
    if subprocess.run([str(c) for c in cmd], cwd=REPO, env=env).returncode != 0:
        raise SystemExit(f"protocol: step '{step}' failed (see above)")
    return time.time() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="output/protocol", help="data, runs and comparison go here")
    p.add_argument("--patients", type=int, default=60, help="synthetic patients (default 60)")
    p.add_argument("--resamples", type=int, default=1000, help="paired bootstrap resamples")
    p.add_argument("sweep_args", nargs=argparse.REMAINDER, help="passed on to tools/sweep.py")
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    data, py = out / "datasets" / "mura_synthetic", sys.executable
    env = {**os.environ, "DETECTRON2_DATASETS": str(out / "datasets")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    steps = []
    if not (data / "annotations" / "mura_synthetic_train.json").is_file():
        steps += [
            (
                "generate",
                [
                    "datasets/generate_synthetic_mura.py",
                    "--out",
                    data,
                    "--patients",
                    a.patients,
                    "--seed",
                    0,
                    "--max-side",
                    128,
                    "--overwrite",
                ],
            ),
            (
                "prepare",
                [
                    "datasets/prepare_mura.py",
                    "--mura-root",
                    data / "MURA-v1.1",
                    "--boxes",
                    data / "boxes.csv",
                    "--out",
                    data,
                    "--name",
                    "mura_synthetic",
                ],
            ),
        ]
    steps += [
        ("folds", ["datasets/make_folds.py", "--dataset", "mura_synthetic", "--folds", 3]),
        ("sweep", ["tools/sweep.py", SWEEP, "--output-dir", out / "runs", *a.sweep_args]),
        (
            "compare",
            [
                "tools/compare_runs.py",
                out / "runs",
                "--paired",
                *CONFIGS,
                "--dataset",
                TEST_SET,
                "--resamples",
                a.resamples,
                "--out",
                out / "comparison",
            ],
        ),
    ]
    t0 = time.time()
    times = {name: _run(name, [py, *cmd], env) for name, cmd in steps}
    print(
        "\n=== protocol: done in "
        + f"{time.time() - t0:.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in times.items())
        + ")"
    )
    print(
        f"  table: {out / 'comparison' / 'summary.md'}; plot: {out / 'comparison' / 'metrics.png'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
