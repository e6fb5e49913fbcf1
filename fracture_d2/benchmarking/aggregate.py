"""Runs grouped by config: mean, standard deviation and 95% CI of each metric across seeds and
folds, per test set (the folds' validation sets count as one: ``mura_fold*_val``).

The CI is the t interval of the mean over runs (``mean +- t(0.975, n-1) * sd / sqrt(n)``):
the spread a reader can expect from retraining, not the test-set sampling error (which the
paired patient bootstrap of :mod:`.paired` covers).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from scipy import stats

from .runs import RunReport

SUMMARY_METRICS = ("AP", "AP50", "froc", "image_auroc", "study_kappa")


def describe(values) -> dict:
    """``n``, ``mean``, ``sd`` (ddof 1), ``ci95`` (t interval) and the values; None-free."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    out = {"n": int(v.size), "values": v.tolist()}
    if v.size == 0:
        return out
    out["mean"] = float(v.mean())
    if v.size > 1:
        sd = float(v.std(ddof=1))
        half = float(stats.t.ppf(0.975, v.size - 1)) * sd / math.sqrt(v.size)
        out.update(sd=sd, ci95=[out["mean"] - half, out["mean"] + half])
    return out


def group_runs(records: list[RunReport], metrics=SUMMARY_METRICS) -> list[dict]:
    """One row per (test set, config), in first-seen order: runs, seeds, folds, and
    :func:`describe` of each metric."""
    groups = defaultdict(list)
    for r in records:
        groups[(r.role, r.config)].append(r)
    rows = []
    for (role, config), runs in groups.items():
        row = {
            "dataset": role,
            "config": config,
            "runs": len(runs),
            "seeds": sorted({r.seed for r in runs if r.seed is not None}),
            "folds": sorted({r.fold for r in runs if r.fold is not None}),
        }
        row.update({m: describe(r.metric(m) for r in runs) for m in metrics})
        rows.append(row)
    return rows


def fmt(d: dict, metric: str) -> str:
    """``mean +- sd [lo, hi]`` (AP in percent with one decimal, others with three)."""
    if "mean" not in d:
        return "-"
    digits = 1 if metric.startswith("AP") else 3
    text = f"{d['mean']:.{digits}f}"
    if "sd" in d:
        lo, hi = d["ci95"]
        text += f" ± {d['sd']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    return text


def summary_markdown(rows: list[dict], metrics=SUMMARY_METRICS) -> str:
    """The table: one line per test set and config."""
    head = ["dataset", "config", "runs", *metrics]
    lines = [
        "## Runs per config: mean ± sd [95% CI of the mean] over seeds and folds",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [r["dataset"], f"`{r['config']}`", r["runs"], *(fmt(r[m], m) for m in metrics)]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def summary_csv_rows(rows: list[dict], metrics=SUMMARY_METRICS) -> list[dict]:
    """Flat rows for ``summary.csv``: ``<metric>_mean/_sd/_ci95_low/_ci95_high/_n``."""
    out = []
    for r in rows:
        flat = {k: r[k] for k in ("dataset", "config", "runs")}
        flat["seeds"] = " ".join(map(str, r["seeds"]))
        flat["folds"] = " ".join(map(str, r["folds"]))
        for m in metrics:
            d = r[m]
            lo, hi = d.get("ci95", (None, None))
            flat.update(
                {
                    f"{m}_mean": d.get("mean"),
                    f"{m}_sd": d.get("sd"),
                    f"{m}_ci95_low": lo,
                    f"{m}_ci95_high": hi,
                    f"{m}_n": d["n"],
                }
            )
        out.append(flat)
    return out
