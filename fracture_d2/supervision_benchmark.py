"""The supervision benchmark (``tools/benchmark_supervision.py``): the same detector trained on
boxes for a fraction of the positives (a) alone, (b) with the other positives' image labels,
(c) with those labels and self-training rounds, (d) with every box; each over seeds, scored on
the test split by bbox AP50, FROC, image AUROC and study kappa."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fracture_d2.self_training import self_training_steps

ARMS = ("box_only", "mixed", "pseudo", "all_boxes")
METRICS = {  # supervision.json key -> the run's metrics.json key
    "ap50": "bbox/AP50",
    "froc": "fracture/froc",
    "image_auroc": "fracture/image_auroc",
    "study_kappa": "fracture/study_kappa",
}
PLAIN, MIXED = "GeneralizedRCNN", "MixedSupervisionRCNN"


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
        return [(f"{arm}, seed {seed}", _train(config, run, common + plain))], run
    mixed = common + ["MODEL.META_ARCHITECTURE", MIXED, "DATASETS.TRAIN", f"('{data['partial']}',)"]
    if arm == "mixed":
        return [(f"mixed, seed {seed}", _train(config, run, mixed))], run
    if arm != "pseudo":
        raise ValueError(f"unknown arm {arm!r}; arms: {ARMS}")
    teacher = out / f"seed{seed}" / "mixed" / "model_final.pth"
    steps = self_training_steps(
        config, mixed, data["partial"], run, rounds, rule, str(teacher), f"{data['partial']}_hidden"
    )
    return [(f"pseudo, seed {seed}: {n}", cmd) for n, cmd in steps], run / f"round{rounds}"


def _train(config: str, run: Path, opts: list) -> list[str]:
    return ["tools/train_net.py", "--config-file", config, *map(str, opts), "OUTPUT_DIR", str(run)]


def run_metrics(run: Path) -> dict | None:
    """The final evaluation's numbers of a training run (None if it has not finished)."""
    path = Path(run) / "metrics.json"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    final = [r for r in records if METRICS["ap50"] in r]
    if not final:
        return None
    return {k: final[-1].get(v) for k, v in METRICS.items()}


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
