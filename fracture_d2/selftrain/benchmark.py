"""The supervision benchmark (``tools/benchmark_supervision.py``): the same detector trained on
boxes for a fraction of the positives (a) alone, (b) with the other positives' image labels,
(c) with those labels and self-training rounds, (d) with every box; each over seeds, scored on
the test split by bbox AP50, FROC, image AUROC and study kappa."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fracture_d2.steps import run_step, synthetic_data_steps, train_command
from fracture_d2.utils_io import atomic_open, read_training_metrics, write_json_atomic

from .rounds import self_training_steps

ARMS = ("box_only", "mixed", "pseudo", "all_boxes")
METRICS = {  # supervision.json key -> the run's metrics.json key
    "ap50": "bbox/AP50",
    "froc": "fracture/froc",
    "image_auroc": "fracture/image_auroc",
    "study_kappa": "fracture/study_kappa",
}
PLAIN, MIXED = "GeneralizedRCNN", "MixedSupervisionRCNN"
WHO = "benchmark_supervision"


def arm_steps(
    arm: str, config: str, seed: int, data: dict, out: Path, opts: list, rounds: int, rule
) -> tuple[list[tuple[str, list[str]]], Path]:
    """The tool commands of one arm and seed, and the run folder holding its final model.

    ``data``: registered names ``full`` (every box), ``partial`` (boxes for the fraction; its
    ``_hidden`` twin holds the others) and ``test``. ``pseudo`` takes the ``mixed`` arm's model
    of the same seed as its first teacher.
    """
    run = out / f"seed{seed}" / arm
    common = [*map(str, opts), "SEED", str(seed), "DATASETS.TEST", f"('{data['test']}',)"]
    if arm in ("box_only", "all_boxes"):
        train = data["full"] if arm == "all_boxes" else data["partial"]
        plain = ["MODEL.META_ARCHITECTURE", PLAIN, "DATASETS.TRAIN", f"('{train}',)"]
        plain += ["FRACTURE.EVAL.IMAGE_SCORE", "max"]
        return [(f"{arm}, seed {seed}", train_command(config, run, common + plain))], run
    mixed = common + ["MODEL.META_ARCHITECTURE", MIXED, "DATASETS.TRAIN", f"('{data['partial']}',)"]
    if arm == "mixed":
        return [(f"mixed, seed {seed}", train_command(config, run, mixed))], run
    if arm != "pseudo":
        raise ValueError(f"unknown arm {arm!r}; arms: {ARMS}")
    teacher = out / f"seed{seed}" / "mixed" / "model_final.pth"
    steps = self_training_steps(
        config, mixed, data["partial"], run, rounds, rule, str(teacher), f"{data['partial']}_hidden"
    )
    return [(f"pseudo, seed {seed}: {n}", cmd) for n, cmd in steps], run / f"round{rounds}"


def run_metrics(run: Path) -> dict | None:
    """The final evaluation's numbers of a training run (None if it has not finished)."""
    path = Path(run) / "metrics.json"
    if not path.is_file():
        return None
    final = [r for r in read_training_metrics(path).values() if METRICS["ap50"] in r]
    return {k: final[-1].get(v) for k, v in METRICS.items()} if final else None


def summary_table(runs: list[dict], fraction: float) -> str:
    """Markdown: mean and sd over seeds of each metric per arm, and the goals."""
    lines = [
        f"| arm (boxes for {100 * fraction:g}% of training positives) | seeds | bbox AP50 | "
        "FROC | image AUROC | study kappa |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    stats = {}
    for arm in ARMS:
        rows = [r for r in runs if r["arm"] == arm]
        if not rows:
            continue
        cells = []
        for key in METRICS:
            values = np.array([r[key] for r in rows if r.get(key) is not None], float)
            stats[arm, key] = values.mean() if len(values) else np.nan
            sd = values.std(ddof=1) if len(values) > 1 else 0.0
            cells.append(
                f"{values.mean():.3f} ± {sd:.3f}"
                if key != "ap50"
                else f"{values.mean():.1f} ± {sd:.1f}"
            )
        lines.append(f"| {arm} | {len(rows)} | " + " | ".join(cells) + " |")
    if all((a, "ap50") in stats for a in ("box_only", "pseudo", "all_boxes")):
        gap = stats["all_boxes", "ap50"] - stats["box_only", "ap50"]
        got = stats["pseudo", "ap50"] - stats["box_only", "ap50"]
        share = got / gap if gap else float("nan")
        lines.append("")
        lines.append(
            f"AP50 gap between box_only and all_boxes: {gap:.1f}; pseudo recovers {got:.1f} "
            f"({100 * share:.0f}%; goal >= 50%)."
        )
    for arm in ("mixed", "pseudo"):
        if (arm, "image_auroc") in stats and ("box_only", "image_auroc") in stats:
            ok = stats[arm, "image_auroc"] >= stats["box_only", "image_auroc"]
            lines.append(
                f"image AUROC {arm} {stats[arm, 'image_auroc']:.3f} vs box_only "
                f"{stats['box_only', 'image_auroc']:.3f}: goal {'met' if ok else 'missed'}."
            )
    return "\n".join(lines) + "\n"


def synthetic_data(root: Path, patients: int, env: dict, name: str = "sup_synthetic") -> str:
    """Generate and prepare the synthetic MURA-layout data under ``root`` (once) as ``name``."""
    if not (root / name / "annotations" / f"{name}_train.json").is_file():
        for step, what, cmd in synthetic_data_steps(root / name, name, patients):
            run_step(f"{step}: {what}", cmd, env, WHO)
    return name


def run_benchmark(
    out: Path, seeds, fraction: float, config: str, arms, patients: int, rounds: int, rule, opts
) -> list[dict]:
    """Run (or resume) every arm for every seed; write ``out/supervision.json`` after each run
    and ``out/supervision.md`` at the end. Returns the runs."""
    import os

    root = out / "datasets"  # the benchmark's own $DETECTRON2_DATASETS
    env = {**os.environ, "DETECTRON2_DATASETS": str(root)}
    name = synthetic_data(root, patients, env)
    runs = []
    for seed in seeds:
        partial = f"{name}_train_box{100 * fraction:g}_s{seed}"
        if not (root / name / "annotations" / f"{partial}.json").is_file():
            cmd = ["datasets/make_box_fraction.py", "--dataset", f"{name}_train"]
            run_step(
                f"box fraction, seed {seed}",
                cmd + ["--fraction", fraction, "--seed", seed],
                env,
                WHO,
            )
        data = {"full": f"{name}_train", "partial": partial, "test": f"{name}_test_all"}
        for arm in arms:
            steps, final = arm_steps(arm, config, seed, data, out, opts, rounds, rule)
            if run_metrics(final) is None:
                for step, cmd in steps:
                    run_step(step, cmd, env, WHO)
            metrics = run_metrics(final)
            if metrics is None:
                raise SystemExit(f"{WHO}: {final}/metrics.json has no final evaluation")
            runs.append({"arm": arm, "seed": seed, **metrics, "run": str(final)})
            report = {"box_fraction": fraction, "config": config, "runs": runs}
            write_json_atomic(out / "supervision.json", report, indent=2)
    with atomic_open(out / "supervision.md", "w", encoding="utf-8") as f:
        f.write(summary_table(runs, fraction))
    return runs
