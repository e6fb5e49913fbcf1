"""K patient-grouped, stratified folds of a prepared dataset's training images.

``make_folds("mura", 5, seed=0)`` reads ``mura_train`` (the registered COCO JSON), gives every
patient to one of K folds with scikit-learn's ``StratifiedGroupKFold`` (groups: patients; strata:
body part x image label) and writes, beside the dataset's other JSONs::

    annotations/mura_fold{i}_train.json   every image of the other K-1 folds
    annotations/mura_fold{i}_val.json     the images of fold i
    mura_folds.json                       seed, K, and per fold: patients, images, positives

so that :func:`fracture_d2.data.register_all` registers ``mura_fold{i}_train`` /
``mura_fold{i}_val`` by the usual convention. The same input and seed always give the same
folds; images without a patient id are their own group (noted in the summary).
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from .errors import DataError
from .output import dump_json
from .register import KNOWN, datasets_root

FOLD_FILE = "{name}_fold{i}_{part}.json"


def dataset_json(name: str, root=None) -> Path:
    """The COCO JSON that :func:`~.register.register_all` registers as ``name``, found by the
    same convention (``<root>/<folder>/annotations/<name>.json``) without importing detectron2:
    like the converters, this runs without torch.

    Raises:
        DataError: no such prepared dataset (says how to prepare a well-known one).
    """
    root = datasets_root() if root is None else Path(root)
    for folder, (names, hint) in KNOWN.items():
        path = root / folder / "annotations" / f"{name}.json"
        if name in names and not path.is_file():
            raise DataError(path, f"dataset {name} is not prepared; run {hint}")
    found = sorted(root.glob(f"*/annotations/{name}.json"))
    if not found:
        raise DataError(
            root / "*" / "annotations" / f"{name}.json",
            f"no prepared dataset {name} under $DETECTRON2_DATASETS (see datasets/README.md)",
        )
    return found[0]


def _load(path: Path) -> dict:
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(path, f"cannot read the COCO JSON ({e})") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise DataError(path, "is not a COCO dataset (no 'images' list)")
    return coco


def image_strata(coco: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """Per image: its group (patient id, else the image itself), its stratum
    ``"<body part>|<label>"`` and how many images had no patient id.

    The label is ``image_label`` where the converter wrote one, else whether it has a box.
    """
    boxed = {a["image_id"] for a in coco.get("annotations", [])}
    groups, strata, no_patient = [], [], 0
    for im in coco["images"]:
        patient = im.get("patient_id")
        if patient in (None, ""):
            no_patient += 1
            patient = f"image:{im['id']}"
        label = im.get("image_label", int(im["id"] in boxed))
        groups.append(str(patient))
        strata.append(f"{im.get('body_part') or '-'}|{label}")
    return np.array(groups), np.array(strata), no_patient


def assign_folds(
    groups: np.ndarray, strata: np.ndarray, k: int, seed: int, notes: list | None = None
) -> np.ndarray:
    """Fold index of each image: whole groups per fold, strata spread evenly (sklearn).

    scikit-learn's warnings (e.g. a stratum rarer than K) are added to ``notes``.

    Raises:
        ValueError: ``k < 2`` or fewer groups than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups.tolist()))
    if k < 2 or k > n_groups:
        raise ValueError(f"--folds must be between 2 and the number of patients ({n_groups})")
    fold = np.full(len(groups), -1)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, (_, val) in enumerate(splitter.split(np.zeros(len(groups)), strata, groups)):
            fold[val] = i
    if notes is not None:
        notes += [str(w.message) for w in caught]
    return fold


def _subset(coco: dict, keep: np.ndarray, description: str) -> dict:
    ids = {im["id"] for im, k in zip(coco["images"], keep, strict=True) if k}
    return {
        **coco,
        "info": {**coco.get("info", {}), "description": description},
        "images": [im for im in coco["images"] if im["id"] in ids],
        "annotations": [a for a in coco.get("annotations", []) if a["image_id"] in ids],
    }


def fold_summary(coco: dict, fold: np.ndarray, groups, strata, k: int) -> list[dict]:
    """Per fold: patients, images, boxes and images per stratum (what a reader checks)."""
    box_count = Counter(a["image_id"] for a in coco.get("annotations", []))
    out = []
    for i in range(k):
        m = fold == i
        ids = [im["id"] for im, x in zip(coco["images"], m, strict=True) if x]
        out.append(
            {
                "fold": i,
                "patients": len(set(groups[m].tolist())),
                "images": int(m.sum()),
                "boxes": sum(box_count[j] for j in ids),
                "strata": dict(sorted(Counter(strata[m].tolist()).items())),
            }
        )
    return out


def _write_all(folder: Path, files: dict) -> None:
    """Write every ``name -> COCO dict`` to a hidden temp file first and rename them only once
    all are written, so that a failure leaves the previous folds as they were."""
    tmp = {}
    try:
        for fname, coco in files.items():
            tmp[fname] = folder / f".{fname}.tmp"
            dump_json(tmp[fname], coco)
        for fname, path in tmp.items():
            os.replace(path, folder / fname)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)


def make_folds(name: str, k: int, seed: int = 0, splits=("train",), root=None) -> dict:
    """Write the fold JSONs of registered dataset ``name`` (see the module docstring).

    Args:
        name: dataset prefix; the images come from ``<name>_<split>`` for each of ``splits``.
        k: number of folds; seed: the split's random seed.
        root: the datasets root (default ``$DETECTRON2_DATASETS``).

    Returns:
        The summary, also written to ``<folder>/<name>_folds.json``.
    """
    sources = [dataset_json(f"{name}_{s}", root) for s in splits]
    cocos = [_load(p) for p in sources]
    coco = {**cocos[0], "images": [], "annotations": []}
    for c in cocos:
        coco["images"] += c["images"]
        coco["annotations"] += c.get("annotations", [])
    if len({im["id"] for im in coco["images"]}) != len(coco["images"]):
        raise DataError(sources[-1], f"repeats image ids of {sources[0]}; cannot pool them")
    groups, strata, no_patient = image_strata(coco)
    notes = []
    fold = assign_folds(groups, strata, k, seed, notes)
    out = sources[0].parent
    files = {
        FOLD_FILE.format(name=name, i=i, part=part): _subset(
            coco, keep, f"{name} fold {i} of {k} ({part}), seed {seed}"
        )
        for i in range(k)
        for part, keep in (("train", fold != i), ("val", fold == i))
    }
    _write_all(out, files)
    written = list(files)
    stale = [p for p in sorted(out.glob(f"{name}_fold*_*.json")) if p.name not in written]
    for p in stale:  # a previous run with more folds: keep no fold the summary does not list
        p.unlink()
    summary = {
        "dataset": name,
        "sources": [str(p) for p in sources],
        "folds": k,
        "seed": seed,
        "images_without_patient_id": no_patient,
        "notes": notes,
        "per_fold": fold_summary(coco, fold, groups, strata, k),
        "written": written,
        "removed_stale": [p.name for p in stale],
    }
    dump_json(out.parent / f"{name}_folds.json", summary, indent=2)
    return summary
