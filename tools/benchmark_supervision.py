#!/usr/bin/env python3
"""Does the detector learn from image labels? On synthetic MURA-layout data with boxes kept for
a fraction of the training positives (the rest labelled by image only), train, per seed:

    box_only   boxes only (GeneralizedRCNN; the label-only positives are left out)
    mixed      boxes + image labels (MixedSupervisionRCNN)
    pseudo     mixed + self-training rounds (teacher: the mixed model)
    all_boxes  every box (GeneralizedRCNN)

and score each on the test split: bbox AP50, FROC score, image AUROC, study kappa. Writes
OUT/supervision.json ({"box_fraction": f, "runs": [{"arm", "seed", "ap50", "froc",
"image_auroc", "study_kappa"}, ...]}) and OUT/supervision.md (mean ± sd over seeds). Finished
runs are kept and skipped, so an interrupted benchmark resumes. Every step is a project tool,
printed as it runs; trailing KEY VALUE pairs go to every training.

Example (the README's table):
    python tools/benchmark_supervision.py --seeds 0 1 2 --box-fraction 0.1 --out output/supervision
"""

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/quick_schedules/faster_rcnn_R_18_FPN_mixed.yaml"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--box-fraction", type=float, default=0.1)
    p.add_argument("--out", default="output/supervision")
    p.add_argument("--config-file", default=CONFIG, help="the schedule every arm trains with")
    p.add_argument("--arms", nargs="+", default=None, help="a subset of the arms")
    p.add_argument("--patients", type=int, default=240, help="synthetic patients generated")
    p.add_argument("--rounds", type=int, default=1, help="self-training rounds of 'pseudo'")
    p.add_argument("--floor", type=float, default=0.05, help="pseudo boxes: the best from this")
    p.add_argument("--threshold", type=float, default=0.5, help="pseudo boxes: others from this")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every run")
    return p.parse_args(argv)


def _run(name: str, cmd: list, env: dict) -> None:
    print(f"\n=== benchmark_supervision: {name}\n$ {shlex.join(['python', *cmd])}", flush=True)
    t = time.time()
    if subprocess.run([sys.executable, *cmd], cwd=REPO, env=env).returncode != 0:
        raise SystemExit(f"benchmark_supervision: step '{name}' failed (see above)")
    print(f"=== {name}: {time.time() - t:.0f} s", flush=True)


def main(argv=None) -> int:
    import os

    a = parse_args(argv)
    sys.path.insert(0, str(REPO))
    from fracture_d2.data.box_fraction import check_fraction
    from fracture_d2.data.errors import DataError
    from fracture_d2.self_training import PseudoRule
    from fracture_d2.supervision_benchmark import ARMS, arm_steps, run_metrics, summary_table
    from fracture_d2.utils_io import atomic_open, write_json_atomic

    try:
        check_fraction(a.box_fraction)
        rule = PseudoRule(a.floor, a.threshold).check()
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    arms = a.arms or list(ARMS)
    out = Path(a.out).resolve()
    root = out / "datasets"  # the benchmark's own $DETECTRON2_DATASETS
    env = {**os.environ, "DETECTRON2_DATASETS": str(root), "PYTHONPATH": str(REPO)}
    name, raw = "sup_synthetic", root / "raw"
    if not (root / name / "annotations" / f"{name}_train.json").is_file():
        _run(
            "generate",
            [
                "datasets/generate_synthetic_mura.py",
                "--out",
                raw,
                "--patients",
                a.patients,
                "--seed",
                0,
                "--overwrite",
            ],
            env,
        )
        _run(
            "prepare",
            [
                "datasets/prepare_mura.py",
                "--mura-root",
                raw / "MURA-v1.1",
                "--boxes",
                raw / "boxes.csv",
                "--out",
                root / name,
                "--name",
                name,
            ],
            env,
        )
    runs, t0 = [], time.time()
    for seed in a.seeds:
        partial = f"{name}_train_box{100 * a.box_fraction:g}_s{seed}"
        if not (root / name / "annotations" / f"{partial}.json").is_file():
            _run(
                f"box fraction, seed {seed}",
                [
                    "datasets/make_box_fraction.py",
                    "--dataset",
                    f"{name}_train",
                    "--fraction",
                    a.box_fraction,
                    "--seed",
                    seed,
                ],
                env,
            )
        data = {"full": f"{name}_train", "partial": partial, "test": f"{name}_test_all"}
        for arm in arms:
            steps, final = arm_steps(arm, a.config_file, seed, data, out, a.opts, a.rounds, rule)
            if run_metrics(final) is None:
                for step, cmd in steps:
                    _run(step, cmd, env)
            metrics = run_metrics(final)
            runs.append({"arm": arm, "seed": seed, **metrics, "run": str(final)})
            report = {"box_fraction": a.box_fraction, "config": a.config_file, "runs": runs}
            write_json_atomic(out / "supervision.json", report, indent=2)
    table = summary_table(runs, a.box_fraction)
    with atomic_open(out / "supervision.md", "w", encoding="utf-8") as f:
        f.write(table)
    print(f"\n{table}\nwrote {out / 'supervision.json'}, supervision.md ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
