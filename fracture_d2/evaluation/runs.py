"""Evaluate a predictions file of a registered dataset, and find the run it came from."""

from __future__ import annotations

import re
from pathlib import Path

from .inputs import EvaluationError, load_ground_truth
from .predictions import load_head_scores, load_predictions, with_head_scores
from .report import check_out_dir, write_report
from .suite import EvalOptions, evaluate_predictions

_CONFIG_ARG = re.compile(r"config_file='([^']+)'")


def config_name(run_dir) -> str | None:
    """The config a Detectron2 run used, from its ``log.txt`` (``default_setup`` logs it):
    ``configs/MURA-Detection/x.yaml`` -> ``MURA-Detection/x``."""
    log = Path(run_dir) / "log.txt"
    if not log.is_file():
        return None
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _CONFIG_ARG.search(line)
            if m:
                name = re.sub(r"^.*?configs/", "", m.group(1))
                return re.sub(r"\.ya?ml$", "", name)
    return None


def run_info(path) -> dict:
    """``{"dir", "config"}`` of the training run holding ``path`` (e.g. a predictions file
    in ``OUTPUT_DIR/inference/<dataset>/``), or {} if it is not inside one."""
    path = Path(path).resolve()
    for d in [path, *list(path.parents)[:3]]:
        if (d / "log.txt").is_file() or (d / "config.yaml").is_file():
            info = {"dir": str(d)}
            name = config_name(d)
            if name:
                info["config"] = name
            return info
    return {}


def resolve_dataset(name: str) -> tuple[str, str | None]:
    """``(json_file, image_table or None)`` of a registered dataset.

    Raises:
        EvaluationError: the name is not registered, or its JSON has not been prepared.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from .evaluator import image_table_of

    if name not in DatasetCatalog.list():
        found = sorted(
            n
            for n in DatasetCatalog.list()
            if Path(MetadataCatalog.get(n).get("json_file", "") or "/nonexistent").is_file()
        )
        raise EvaluationError(
            f"--dataset {name}",
            "is not registered; prepared datasets under $DETECTRON2_DATASETS: "
            + (", ".join(found[:30]) + (" ..." if len(found) > 30 else "") if found else "none"),
        )
    json_file = MetadataCatalog.get(name).get("json_file", "")
    if not json_file or not Path(json_file).is_file():
        raise EvaluationError(
            json_file or name,
            f"dataset {name} is registered but not prepared; see datasets/README.md "
            "(or set $DETECTRON2_DATASETS)",
        )
    return json_file, image_table_of(name)


def evaluate_files(
    dataset: str,
    predictions,
    out_dir,
    image_table=None,
    options: EvalOptions | None = None,
    config: str | None = None,
    head_scores=None,
):
    """Load, evaluate and write the report of ``predictions`` on registered ``dataset``.

    Args:
        image_table: CSV overriding the dataset's registered image-level table.
        config: config name recorded for leaderboards (default: found from the run's log).
        head_scores: ``image_head_scores.json`` of a model with an image-level head (for the
            image score methods ``head`` and ``mean_head_max``).

    Returns:
        ``(metrics, {file name: path})``.
    """
    check_out_dir(out_dir)  # before the work, not after it
    json_file, table = resolve_dataset(dataset)
    gt = load_ground_truth(json_file, dataset, image_table or table)
    preds = load_predictions(predictions, gt)
    if head_scores:
        preds = with_head_scores(preds, gt, load_head_scores(head_scores), head_scores)
    tables = {}
    metrics = evaluate_predictions(gt, preds, options, tables)
    run = run_info(predictions)
    if config:
        run["config"] = config
    if run:
        metrics["run"] = run
    if image_table or table:
        metrics["image_table"] = str(image_table or table)
    return metrics, write_report(metrics, out_dir, tables)
