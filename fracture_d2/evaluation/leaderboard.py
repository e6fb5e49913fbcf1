"""A leaderboard of several runs' evaluation reports (Markdown + CSV), sorted by a metric."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..utils_io import atomic_open
from .inputs import EvaluationError
from .report import read_report
from .runs import config_name

# column -> (report path, CI path or None); all are "higher is better"
METRICS = {
    "AP": (("coco", "overall", "AP"), None),
    "AP50": (("coco", "overall", "AP50"), None),
    "AP75": (("coco", "overall", "AP75"), None),
    "froc": (("froc", "score"), ("froc", "ci95")),
    "sens_at_1fppi": (("froc", "sensitivity", 3), ("froc", "sensitivity_ci95", 3)),
    "image_auroc": (("image_level", "auroc"), ("image_level", "ci95")),
    "study_kappa": (("study_level", "kappa"), ("study_level", "ci95", "kappa")),
    "study_auroc": (("study_level", "auroc"), ("study_level", "ci95", "auroc")),
}


def _get(d, path):
    for k in path:
        try:
            d = d[k]
        except (KeyError, IndexError, TypeError):
            return None
    return d


def find_reports(run_dir) -> list[tuple[Path, dict]]:
    """Reports in a ``tools/evaluate.py --out`` folder or a training ``OUTPUT_DIR``
    (``inference/<dataset>/metrics.json``, written by the Trainer's evaluator)."""
    run_dir = Path(run_dir)
    found = []
    for p in [run_dir / "metrics.json", *sorted(run_dir.glob("inference/*/metrics.json"))]:
        report = read_report(p) if p.is_file() else None
        if report is not None:
            found.append((p, report))
    return found


def _sweep_config(run_dir: Path) -> str | None:
    """The config name tools/sweep.py recorded in the run's ``run_info.json``."""
    try:
        return json.loads((run_dir / "run_info.json").read_text(encoding="utf-8")).get("config")
    except (OSError, ValueError, AttributeError):
        return None


def leaderboard_rows(run_dirs) -> list[dict]:
    """One row per report found under each run folder.

    Raises:
        EvaluationError: a folder holds no evaluation report.
    """
    rows = []
    for run_dir in map(Path, run_dirs):
        reports = find_reports(run_dir)
        if not reports:
            raise EvaluationError(
                run_dir,
                "holds no evaluation report (metrics.json from tools/evaluate.py --out, or "
                "inference/<dataset>/metrics.json from train_net.py)",
            )
        for path, r in reports:
            config = _get(r, ("run", "config")) or _sweep_config(run_dir) or config_name(run_dir)
            row = {
                "run": run_dir.name or str(run_dir),
                "config": config or "-",
                "dataset": r["dataset"],
                "n_images": r["n_images"],
            }
            for name, (vpath, cpath) in METRICS.items():
                row[name] = _get(r, vpath)
                ci = _get(r, cpath) if cpath else None
                row[f"{name}_ci95_low"], row[f"{name}_ci95_high"] = ci if ci else (None, None)
            row["report"] = str(path)
            rows.append(row)
    return rows


def sort_rows(rows: list[dict], metric: str) -> list[dict]:
    """Best first by ``metric`` within each dataset; rows without it last."""
    if metric not in METRICS:
        raise ValueError(f"--sort-by must be one of {list(METRICS)}, got {metric!r}")
    return sorted(rows, key=lambda r: (r["dataset"], r[metric] is None, -(r[metric] or 0.0)))


def _cell(row, name):
    v, lo, hi = row[name], row[f"{name}_ci95_low"], row[f"{name}_ci95_high"]
    if v is None:
        return "-"
    digits = 1 if name.startswith("AP") else 3
    text = f"{v:.{digits}f}"
    return f"{text} [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None else text


def markdown(rows: list[dict], metric: str) -> str:
    head = ["#", "run", "config", "dataset", "images", *METRICS]
    lines = [
        f"# Leaderboard (sorted by {metric}, best first; 95% CIs in brackets)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    rank, last = 0, None
    for r in rows:
        rank = rank + 1 if r["dataset"] == last else 1
        last = r["dataset"]
        cells = [rank, r["run"], f"`{r['config']}`", r["dataset"], r["n_images"]]
        cells += [_cell(r, m) for m in METRICS]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def write_leaderboard(rows: list[dict], out_dir, metric: str) -> dict:
    """``leaderboard.md`` and ``leaderboard.csv`` in ``out_dir`` (atomically)."""
    out = Path(out_dir)
    paths = {"md": out / "leaderboard.md", "csv": out / "leaderboard.csv"}
    with atomic_open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown(rows, metric))
    with atomic_open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(rows[0]) if rows else ["run"], lineterminator="\n")
        w.writeheader()
        w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return paths
