"""Paired tests of config A against config B on the same test images and patients.

- Patient bootstrap of ΔAP50 and ΔFROC: each resample draws patients with replacement; every
  run of A and of B is scored on the *same* draw and the configs' mean over their runs is
  compared. 95% percentile CI of Δ and the two-sided bootstrap p-value
  ``2 * min(P(Δ* <= 0), P(Δ* >= 0))`` (with the usual +1 correction, never 0).
- DeLong's test of ΔAUROC (image level, the evaluator's ``image_scores.csv``): the contrast
  mean AUROC of A's runs minus B's (:mod:`fracture_d2.evaluation.delong`). Images are the
  cases (DeLong assumes independent cases; the bootstrap above resamples patients).
- Across seeds and folds: runs paired by (fold, seed), the paired t-test and Wilcoxon's
  signed-rank test (scipy) of each headline metric: is the gain larger than retraining noise?

Test-level comparisons need the same images: runs whose evaluated images differ raise
:class:`~fracture_d2.evaluation.inputs.EvaluationError` naming the file.
"""

from __future__ import annotations

import csv
import warnings
from collections import defaultdict

import numpy as np
from scipy import stats

from ..evaluation.bootstrap import make_bootstrap
from ..evaluation.delong import delong_test, mean_difference_contrast
from ..evaluation.inputs import EvaluationError, load_ground_truth
from ..evaluation.predictions import load_predictions
from ..evaluation.resampled import ap50_resampled, froc_resampled
from .aggregate import SUMMARY_METRICS
from .runs import RunReport


def check_same_images(runs: list[RunReport]) -> None:
    """Raise EvaluationError (naming the file) unless every run evaluated the same images."""
    first = runs[0].image_ids()
    for r in runs[1:]:
        ids = r.image_ids()
        if ids != first:
            raise EvaluationError(
                r.path.parent / "image_scores.csv",
                f"{r.config} was evaluated on {len(ids)} other images than {runs[0].config} "
                f"({len(first)} images, {runs[0].path}) on {r.dataset}: a paired test needs "
                "the same test set",
            )


def _boot_stats(a: np.ndarray, b: np.ndarray, point: float) -> dict:
    d = a - b
    d = d[np.isfinite(d)]
    lo, hi = np.percentile(d, [2.5, 97.5])
    tail = min((d <= 0).sum(), (d >= 0).sum())
    p = min(1.0, 2.0 * (tail + 1) / (len(d) + 1))
    return {"delta": point, "ci95": [float(lo), float(hi)], "p": p, "resamples": int(len(d))}


def _resampled(gt, preds, boot, opts) -> dict:
    """``{metric: (on all data, per resample)}`` of one run's predictions."""
    ap_point = float(ap50_resampled(gt, preds, np.ones((1, len(gt))))[0])
    ap = ap50_resampled(gt, preds, boot.weights[:, boot.unit_of_image])
    crit = (opts.get("criterion", "iou"), opts.get("iou_threshold", 0.5))
    return {"AP50": (ap_point, ap), "froc": froc_resampled(gt, preds, boot, *crit)}


def bootstrap_test(runs_a, runs_b, resamples: int = 1000, seed: int = 0) -> dict:
    """Paired patient bootstrap of ΔAP50 and ΔFROC on one test set (see the module doc)."""
    rep = runs_a[0].report
    gt = load_ground_truth(rep["dataset_json"], rep["dataset"], rep.get("image_table"))
    boot = make_bootstrap(gt.patient, len(gt), resamples, seed)
    per_config = []
    for runs in (runs_a, runs_b):
        per_run = [
            _resampled(
                gt,
                load_predictions(r.predictions_path(), gt, allow_empty=True),
                boot,
                rep.get("options", {}),
            )
            for r in runs
        ]
        per_config.append(per_run)
    out = {"unit": boot.unit, "seed": seed}
    for name in ("AP50", "froc"):
        (a, ba), (b, bb) = (
            (np.mean([r[name][0] for r in runs]), [r[name][1] for r in runs]) for runs in per_config
        )
        with warnings.catch_warnings():  # resamples without any lesion are NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            ma, mb = np.nanmean(ba, axis=0), np.nanmean(bb, axis=0)  # the configs' mean run
        out[name] = {"a": float(a), "b": float(b), **_boot_stats(ma, mb, float(a - b))}
    return out


def _image_scores(r: RunReport) -> tuple[np.ndarray, np.ndarray]:
    path = r.path.parent / "image_scores.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: int(row["image_id"]))
    return np.array([int(x["label"]) for x in rows]), np.array([float(x["score"]) for x in rows])


def delong_auroc(runs_a, runs_b) -> dict | None:
    """DeLong's test of mean image AUROC of A's runs minus B's; None without two classes."""
    labels, scores = [], []
    for r in [*runs_a, *runs_b]:
        y, s = _image_scores(r)
        labels.append(y)
        scores.append(s)
    y = labels[0]
    keep = y >= 0
    if len(set(y[keep].tolist())) < 2:
        return None
    res = delong_test(
        y[keep] == 1,
        np.stack([s[keep] for s in scores]),
        mean_difference_contrast(len(runs_a), len(runs_b)),
    )
    n_a = len(runs_a)
    return {
        "a": float(res.auc[:n_a].mean()),
        "b": float(res.auc[n_a:].mean()),
        "delta": float(res.estimate[0]),
        "se": float(res.se[0]),
        "z": float(res.statistic) if np.isfinite(res.statistic) else None,
        "p": res.p_value,
        "images": int(keep.sum()),
    }


def per_seed_tests(runs_a, runs_b, metrics=SUMMARY_METRICS) -> dict:
    """Runs paired by (fold, seed): paired t-test and Wilcoxon signed-rank of each metric."""
    by_key_a = {(r.fold, r.seed): r for r in runs_a}
    by_key_b = {(r.fold, r.seed): r for r in runs_b}
    keys = sorted(set(by_key_a) & set(by_key_b), key=repr)
    out = {"pairs": len(keys), "unpaired_runs": len(by_key_a) + len(by_key_b) - 2 * len(keys)}
    for m in metrics:
        pairs = [(by_key_a[k].metric(m), by_key_b[k].metric(m)) for k in keys]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        d = np.array([x - y for x, y in pairs])
        res = {"n": len(d), "mean_delta": float(d.mean()) if len(d) else None}
        if len(d) >= 2 and np.ptp(d) > 0:
            res["p_t"] = float(stats.ttest_rel([x for x, _ in pairs], [y for _, y in pairs]).pvalue)
            if (d != 0).any():
                res["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue)
        out[m] = res
    return out


def compare(records: list[RunReport], a: str, b: str, resamples=1000, seed=0) -> list[dict]:
    """All paired tests of config ``a`` against ``b``, per test set both were evaluated on.

    Raises:
        EvaluationError: a config has no runs, they share no test set, or runs of one test
            set were evaluated on different images.
    """
    by = defaultdict(list)
    for r in records:
        by[(r.role, r.config)].append(r)
    for name in (a, b):
        if not any(c == name for _, c in by):
            known = sorted({c for _, c in by})
            raise EvaluationError(name, f"no runs of this config; configs found: {known}")
    roles = [role for role, c in by if c == a and (role, b) in by]
    if not roles:
        raise EvaluationError(f"{a} vs {b}", "the two configs share no test set")
    out = []
    for role in roles:
        runs_a, runs_b = by[(role, a)], by[(role, b)]
        entry = {"dataset": role, "a": a, "b": b, "per_seed": per_seed_tests(runs_a, runs_b)}
        entry["test_sets"] = []
        for ds in sorted({r.dataset for r in runs_a} & {r.dataset for r in runs_b}):
            ra = [r for r in runs_a if r.dataset == ds]
            rb = [r for r in runs_b if r.dataset == ds]
            check_same_images(ra + rb)
            test = {"dataset": ds, "runs_a": len(ra), "runs_b": len(rb)}
            test["bootstrap"] = bootstrap_test(ra, rb, resamples, seed)
            test["delong_auroc"] = delong_auroc(ra, rb)
            entry["test_sets"].append(test)
        out.append(entry)
    return out
