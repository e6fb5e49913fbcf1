"""Find the evaluation reports of many runs and what each run was: config, seed, fold.

A run folder is a training ``OUTPUT_DIR`` (reports in ``inference/<dataset>/metrics.json``,
and ``inference_TTA/<dataset>/`` with ``TEST.AUG.ENABLED``) or a ``tools/evaluate.py --out``
folder. Sweep runs also hold ``run_info.json`` (:mod:`.provenance`) naming their config, seed
and fold; a folder holding neither is searched for such runs (a whole sweep at once).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluation.inputs import EvaluationError
from ..evaluation.leaderboard import METRICS, _get, find_reports
from ..evaluation.report import read_report
from ..evaluation.runs import config_name

RUN_INFO = "run_info.json"


def dataset_role(name: str) -> str:
    """The dataset with its fold index blanked: ``mura_fold2_val`` -> ``mura_fold*_val``, so
    that the folds of a cross-validation are aggregated as one test set."""
    return re.sub(r"_fold\d+_", "_fold*_", name)


@dataclass
class RunReport:
    """One evaluation report of one run."""

    run_dir: Path
    path: Path  # the report (metrics.json)
    report: dict = field(repr=False)
    config: str  # the group: sweep config name (or the config file's), "+TTA" for TTA reports
    seed: int | None
    fold: int | None

    @property
    def dataset(self) -> str:
        return self.report["dataset"]

    @property
    def role(self) -> str:
        return dataset_role(self.dataset)

    def metric(self, name: str) -> float | None:
        """A headline number (see :data:`fracture_d2.evaluation.leaderboard.METRICS`)."""
        return _get(self.report, METRICS[name][0])

    def predictions_path(self) -> Path:
        """The box predictions the report was computed from."""
        beside = self.path.parent / "coco_instances_results.json"
        if beside.is_file():
            return beside
        recorded = Path(str(self.report.get("predictions", "")))
        if recorded.is_file():
            return recorded
        raise EvaluationError(self.path, f"no coco_instances_results.json beside it ({beside})")

    def image_ids(self) -> list[int]:
        """The evaluated images (``image_scores.csv``, written with the report)."""
        table = self.path.parent / "image_scores.csv"
        try:
            with open(table, newline="", encoding="utf-8") as f:
                return sorted(int(r["image_id"]) for r in csv.DictReader(f))
        except (OSError, KeyError, ValueError) as e:
            raise EvaluationError(table, f"cannot read the evaluated image ids ({e})") from None


def _seed_of(run_dir: Path) -> int | None:
    """``SEED`` from the ``config.yaml`` Detectron2 writes into every OUTPUT_DIR."""
    import yaml

    try:
        seed = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")).get("SEED")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return seed if isinstance(seed, int) and seed >= 0 else None


def read_run(run_dir) -> list[RunReport]:
    """Every report of one run folder (empty if it has none)."""
    run_dir = Path(run_dir)
    info = {}
    if (run_dir / RUN_INFO).is_file():
        try:
            info = json.loads((run_dir / RUN_INFO).read_text(encoding="utf-8"))
        except ValueError as e:
            raise EvaluationError(run_dir / RUN_INFO, f"is not valid JSON ({e})") from None
    found = find_reports(run_dir)
    tta = sorted(run_dir.glob("inference_TTA/*/metrics.json"))
    found += [(p, r) for p in tta if (r := read_report(p)) is not None]
    out = []
    for path, report in found:
        config = info.get("config") or _get(report, ("run", "config")) or config_name(run_dir)
        config = config or run_dir.name
        if path.parent.parent.name == "inference_TTA":
            config += "+TTA"
        seed = info.get("seed", _seed_of(run_dir)) if info else _seed_of(run_dir)
        out.append(RunReport(run_dir, path, report, config, seed, info.get("fold")))
    return out


def collect_runs(paths) -> list[RunReport]:
    """Reports of every run under ``paths`` (run folders, or folders holding runs).

    Raises:
        EvaluationError: a path holds no report and no run.
    """
    out = []
    for path in map(Path, paths):
        reports = read_run(path)
        if not reports:
            for info in sorted(path.rglob(RUN_INFO)):
                reports += read_run(info.parent)
        if not reports:
            raise EvaluationError(
                path,
                "holds no evaluation report and no run (inference/<dataset>/metrics.json of "
                "train_net.py, metrics.json of tools/evaluate.py, or sweep runs)",
            )
        out += reports
    return out
