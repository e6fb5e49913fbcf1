"""Fake sweep outputs for the comparison tests: run folders as train_net.py + tools/sweep.py
leave them (run_info.json, inference/<dataset>/ reports, predictions), without training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fracture_d2.evaluation.inputs import load_ground_truth
from fracture_d2.evaluation.predictions import predictions_from_list
from fracture_d2.evaluation.report import write_report
from fracture_d2.evaluation.suite import EvalOptions, evaluate_predictions
from fracture_d2.evaluation.synthetic import make_case

DATASET = "mura_synthetic_test_all"


def write_case(path: Path, n_images: int = 120, drop: int = 0) -> tuple[Path, list]:
    """A synthetic test set (``drop`` fewer images) and its reference predictions."""
    coco, preds = make_case(n_images, dets_per_image=8, seed=0)
    if drop:
        keep = {im["id"] for im in coco["images"][drop:]}
        coco["images"] = [im for im in coco["images"] if im["id"] in keep]
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
        preds = [p for p in preds if p["image_id"] in keep]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco))
    return path, preds


def degrade(preds: list, seed: int, strength: float) -> list:
    """Scores mixed with noise: ``strength`` 0 keeps the ranking, 1 makes it random."""
    rng = np.random.default_rng(seed)
    out = []
    for p in preds:
        s = (1 - strength) * p["score"] + strength * rng.random()
        out.append({**p, "score": float(np.clip(s + rng.normal(0, 0.02), 0, 1))})
    return out


def write_run(run_dir: Path, dataset_json: Path, preds: list, config: str, seed: int, fold=None):
    """One run folder: run_info.json and the evaluator's outputs on ``DATASET``."""
    gt = load_ground_truth(dataset_json, DATASET)
    out = run_dir / "inference" / DATASET
    out.mkdir(parents=True, exist_ok=True)
    (out / "coco_instances_results.json").write_text(json.dumps(preds))
    tables = {}
    metrics = evaluate_predictions(
        gt, predictions_from_list(preds, gt), EvalOptions(bootstrap=0), tables
    )
    write_report(metrics, out, tables)
    info = {"config": config, "seed": seed, "fold": fold, "status": "finished"}
    (run_dir / "run_info.json").write_text(json.dumps(info))
    return run_dir


def fake_sweep(root: Path, dataset_json: Path, preds: list, strengths: dict, seeds=(0, 1, 2)):
    """``root/<config>/seed<s>`` for each config (noise strength) and seed."""
    for config, strength in strengths.items():
        for s in seeds:
            noisy = degrade(preds, 100 * s + len(config), strength)
            write_run(root / config / f"seed{s}", dataset_json, noisy, config, s)
    return root
