"""Read the prediction files of several runs and check that they can be fused: the same kind,
the same images, the same classes. Bad input raises one line naming the file.

Two kinds are read: Detectron2's ``coco_instances_results.json`` (a JSON list; the images are
those of the dataset it was made on: ``inference/<dataset>/`` or ``--dataset``) and
``tools/predict.py``'s ``predictions.json`` (images listed by file name, with categories).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..data.errors import DataError
from ..data.folds import dataset_json
from ..evaluation.inputs import EvaluationError, read_json

PREDICT_FORMAT = "fracture_d2.predictions/1"  # tools/predict.py's "format" field


@dataclass
class PredictionFile:
    """One run's predictions: COCO ``results`` (xywh boxes) and what they cover."""

    path: Path
    kind: str  # "coco" (a Detectron2 results list) or "predict" (tools/predict.py)
    results: list
    dataset: str | None = None  # coco: the dataset the predictions were made on, if known
    doc: dict | None = None  # predict: the whole document (images, categories, info)


def _dataset_of(path: Path) -> str | None:
    """``inference/<dataset>/coco_instances_results.json`` or a report beside the file."""
    try:
        return json.loads((path.parent / "metrics.json").read_text(encoding="utf-8"))["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if path.parent.parent.name in ("inference", "inference_TTA"):
        return path.parent.name
    return None


def read_predictions(path) -> PredictionFile:
    """Read one prediction file (either kind).

    Raises:
        EvaluationError: unreadable, not JSON, or neither kind.
    """
    path = Path(path)
    data = read_json(path, "predictions")
    if isinstance(data, list):
        return PredictionFile(path, "coco", data, _dataset_of(path))
    if isinstance(data, dict) and data.get("format") == PREDICT_FORMAT:
        return PredictionFile(path, "predict", list(data.get("results", [])), doc=data)
    raise EvaluationError(
        path, "is neither coco_instances_results.json (a list) nor tools/predict.py output"
    )


def _ids(results) -> set:
    return {int(r["image_id"]) for r in results}


def _check_predict(files: list[PredictionFile]) -> None:
    ref = files[0]
    names = [im["file_name"] for im in ref.doc["images"]]
    cats = ref.doc.get("categories")
    for f in files[1:]:
        other = [im["file_name"] for im in f.doc["images"]]
        if sorted(other) != sorted(names):
            missing = len(set(names) - set(other)) + len(set(other) - set(names))
            raise EvaluationError(
                f.path,
                f"predicts other images than {ref.path} "
                f"({missing} file names differ); ensembles need the same images",
            )
        if f.doc.get("categories") != cats:
            raise EvaluationError(
                f.path,
                f"has classes {f.doc.get('categories')} but {ref.path} "
                f"has {cats}; ensembles need the same class list",
            )


def _dataset_ids(name: str, path: Path) -> tuple[set, set]:
    try:
        coco = json.loads(dataset_json(name).read_text(encoding="utf-8"))
    except (DataError, OSError, ValueError) as e:
        raise EvaluationError(path, f"dataset {name}: {e}") from None
    return {int(im["id"]) for im in coco["images"]}, {int(c["id"]) for c in coco["categories"]}


def check_compatible(files: list[PredictionFile], dataset: str | None = None) -> str | None:
    """Raise EvaluationError (naming the file) unless the files cover the same images and
    classes; returns the dataset of COCO-list inputs (``dataset``, or the one they name)."""
    if len(files) < 2:
        raise EvaluationError(files[0].path if files else "-", "an ensemble needs 2+ files")
    for f in files[1:]:
        if f.kind != files[0].kind:
            raise EvaluationError(
                f.path, f"is {f.kind} output but {files[0].path} is {files[0].kind}"
            )
    if files[0].kind == "predict":
        _check_predict(files)
        return None
    named = [f for f in files if f.dataset]
    for f in named:
        if (dataset or named[0].dataset) != f.dataset:
            raise EvaluationError(
                f.path,
                f"was made on dataset {f.dataset}, not on "
                f"{dataset or named[0].dataset}; ensembles need the same images",
            )
    dataset = dataset or (named[0].dataset if named else None)
    if dataset is None:  # nothing says which images: the images with predictions must agree
        for f in files[1:]:
            if _ids(f.results) != _ids(files[0].results):
                raise EvaluationError(
                    f.path,
                    f"predicts other image ids than {files[0].path}; "
                    "pass --dataset NAME if the runs share a dataset",
                )
            cats = {int(r["category_id"]) for r in f.results}
            if cats != {int(r["category_id"]) for r in files[0].results}:
                raise EvaluationError(f.path, f"has other category ids than {files[0].path}")
        return None
    images, categories = _dataset_ids(dataset, files[0].path)
    for f in files:
        if not _ids(f.results) <= images:
            raise EvaluationError(f.path, f"names image ids that are not in dataset {dataset}")
        if not {int(r["category_id"]) for r in f.results} <= categories:
            raise EvaluationError(f.path, f"names category ids not in dataset {dataset}")
    return dataset
