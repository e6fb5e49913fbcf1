"""Write a comparison: ``summary.md`` / ``.csv`` / ``.json`` (+ the paired tests) and one plot,
``metrics.png``: each metric per config with its 95% CI across runs; every file atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..evaluation.report import clean
from ..utils_io import atomic_open, write_json_atomic
from .aggregate import SUMMARY_METRICS, summary_csv_rows, summary_markdown


def _p(p) -> str:
    return "-" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _num(v, metric) -> str:
    return "-" if v is None else f"{v:.{1 if metric.startswith('AP') else 3}f}"


PAIRED_FIELDS = ("value_a", "value_b", "delta", "ci95_low", "ci95_high", "p", "test")


def paired_rows(comparisons: list[dict]) -> list[dict]:
    """Every paired test as a flat row (``paired.csv``, and the Markdown tables)."""
    rows = []
    for c in comparisons:
        base = {"dataset": c["dataset"], "a": c["a"], "b": c["b"]}

        def add(test_set, metric, *values, base=base, **extra):
            values = dict(zip(PAIRED_FIELDS, values, strict=True))
            rows.append({**base, "test_set": test_set, "metric": metric, **values, **extra})

        for t in c["test_sets"]:
            runs = f"{t['runs_a']} vs {t['runs_b']} runs"
            for m in ("AP50", "froc"):
                r = t["bootstrap"][m]
                test = f"patient bootstrap ({r['resamples']} resamples, {runs})"
                add(t["dataset"], m, r["a"], r["b"], r["delta"], *r["ci95"], r["p"], test)
            d = t["delong_auroc"]
            if d:
                lo, hi = d["delta"] - 1.96 * d["se"], d["delta"] + 1.96 * d["se"]
                test = f"DeLong ({d['images']} images, {runs})"
                add(t["dataset"], "image_auroc", d["a"], d["b"], d["delta"], lo, hi, d["p"], test)
        for m in SUMMARY_METRICS:
            r = c["per_seed"].get(m)
            if r and r["n"]:
                test = f"paired t over {r['n']} (fold, seed) pairs"
                add(
                    "per run",
                    m,
                    None,
                    None,
                    r["mean_delta"],
                    None,
                    None,
                    r.get("p_t"),
                    test,
                    p_wilcoxon=r.get("p_wilcoxon"),
                )
    return rows


def paired_markdown(comparisons: list[dict]) -> str:
    """One table per comparison: test-set level (bootstrap, DeLong), then across runs."""
    lines = []
    head = ["test set", "metric", "A", "B", "Δ (A − B)", "95% CI of Δ", "p", "test"]
    for c in comparisons:
        lines += [f"## Paired tests: `{c['a']}` (A) vs `{c['b']}` (B) on {c['dataset']}", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in paired_rows([c]):
            m = r["metric"]
            ci = "-"
            if r.get("ci95_low") is not None:
                ci = f"[{_num(r['ci95_low'], m)}, {_num(r['ci95_high'], m)}]"
            p = _p(r["p"])
            if r.get("p_wilcoxon") is not None:
                p += f" (Wilcoxon {_p(r['p_wilcoxon'])})"
            cells = [r["test_set"], m, _num(r.get("value_a"), m), _num(r.get("value_b"), m)]
            cells += [_num(r["delta"], m), ci, p, r["test"]]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_metrics(rows: list[dict], path, metrics=SUMMARY_METRICS) -> Path:
    """One panel per metric: each (test set, config) as mean with a 95% CI error bar."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(metrics), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    labels = [f"{r['config']}\n{r['dataset']}" for r in rows]
    for ax, m in zip(axes, metrics, strict=True):
        for i, r in enumerate(rows):
            d = r[m]
            if "mean" not in d:
                continue
            err = [[d["mean"] - d["ci95"][0]], [d["ci95"][1] - d["mean"]]] if "ci95" in d else None
            ax.errorbar([i], [d["mean"]], yerr=err, fmt="o", capsize=4)
            ax.plot([i] * len(d["values"]), d["values"], ".", color="0.6", ms=4)
        ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_title(m)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("mean and 95% CI over runs (grey: single runs)", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
    return Path(path)


def _write_csv(path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["dataset"]
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fields, lineterminator="\n")
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)


def write_comparison(rows: list[dict], comparisons: list[dict], out_dir) -> dict:
    """Write the summary, the paired tests and the plot into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    names = ("summary.md", "summary.csv", "paired.csv", "summary.json", "metrics.png")
    paths = {k: out / k for k in names}
    text = summary_markdown(rows) + "\n" + paired_markdown(comparisons)
    with atomic_open(paths["summary.md"], "w", encoding="utf-8") as f:
        f.write(text)
    _write_csv(paths["summary.csv"], summary_csv_rows(rows))
    _write_csv(paths["paired.csv"], paired_rows(comparisons))
    write_json_atomic(paths["summary.json"], clean({"groups": rows, "paired": comparisons}), 1)
    plot_metrics(rows, paths["metrics.png"])
    return paths
