"""Register prepared datasets with Detectron2 by name, from ``$DETECTRON2_DATASETS``.

Convention: a converter writes ``<root>/<folder>/annotations/<name>.json`` (COCO) and the
images lie under ``<root>/<folder>/``; each such JSON is registered as ``<name>``. The
well-known names (``mura_train``, ``mura_test_XR_WRIST``, ``fracatlas_val``, ...) are always
registered, so asking for one that has not been prepared says how to prepare it.
``thing_classes`` come from the folder's ``prepare_summary.json`` (multi-class conversions),
default ``["fracture"]``.

detectron2 is imported inside the functions only: the converters import this package and must
not pull in torch (about 1 GB resident with a CUDA build).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .coco import DEFAULT_CLASSES
from .mura import BODY_PARTS

# folder under the root -> (registered names, how to prepare it)
KNOWN = {
    "mura": (
        [f"mura_{s}" for s in ("train", "val", "test", "val_all", "test_all")]
        + [f"mura_test_{p}" for p in BODY_PARTS],
        "python datasets/prepare_mura.py --mura-root <root>/mura/MURA-v1.1 --boxes BOXES.csv "
        "--out <root>/mura",
    ),
    "fracatlas": (
        [f"fracatlas_{s}" for s in ("train", "val", "test")],
        "python datasets/prepare_fracatlas.py --root <root>/fracatlas/FracAtlas "
        "--out <root>/fracatlas",
    ),
}


def datasets_root() -> Path:
    """``$DETECTRON2_DATASETS`` (default ``datasets``), as Detectron2's builtin datasets use it."""
    return Path(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))


def _loader(name: str, json_file: Path, image_root: Path, hint: str):
    def load():
        from detectron2.data.datasets import load_coco_json

        if not json_file.is_file():
            raise FileNotFoundError(
                f"dataset '{name}': {json_file} not found; prepare it with: {hint} "
                f"(or set $DETECTRON2_DATASETS; see datasets/README.md)"
            )
        dicts = load_coco_json(str(json_file), str(image_root), name)
        return with_image_labels(dicts, json_file)

    return load


def with_image_labels(dicts: list[dict], json_file: Path) -> list[dict]:
    """Detectron2's dataset dicts with each image's ``image_label`` (1: abnormal) and
    ``annotated`` (its boxes are complete) from the COCO JSON; images without them are taken as
    completely annotated, abnormal iff they have a box."""
    with open(json_file, encoding="utf-8") as f:
        images = {im["id"]: im for im in json.load(f).get("images", [])}
    for d in dicts:
        im = images.get(d["image_id"], {})
        d["annotated"] = bool(im.get("annotated", True))
        d["image_label"] = int(im.get("image_label", int(bool(d.get("annotations")))))
    return dicts


def register_dataset(name: str, json_file, image_root, hint: str = "", **metadata) -> None:
    """Register one COCO-format dataset (lazily loaded), like ``register_coco_instances``."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    json_file, image_root = Path(json_file), Path(image_root)
    DatasetCatalog.register(name, _loader(name, json_file, image_root, hint))
    metadata.setdefault("thing_classes", list(DEFAULT_CLASSES))
    MetadataCatalog.get(name).set(
        json_file=str(json_file), image_root=str(image_root), evaluator_type="coco", **metadata
    )


def register_all(root: str | os.PathLike | None = None) -> list[str]:
    """Register the known dataset names plus every ``<root>/*/annotations/*.json``.

    Names already registered are left alone, so calling this twice is harmless.

    Returns:
        The names registered by this call.
    """
    from detectron2.data import DatasetCatalog

    root = Path(root) if root is not None else datasets_root()
    done = []
    for folder, (names, hint) in KNOWN.items():
        for name in names:
            if name not in DatasetCatalog:
                register_dataset(
                    name,
                    root / folder / "annotations" / f"{name}.json",
                    root / folder,
                    hint.replace("<root>", str(root)),
                    image_table=str(root / folder / "annotations" / f"{folder}_images.csv"),
                    **_classes_of(root / folder, name),
                )
                done.append(name)
    for json_file in sorted(root.glob("*/annotations/*.json")):
        name = json_file.stem
        if name not in DatasetCatalog:
            folder = json_file.parent.parent
            table = next(iter(sorted(json_file.parent.glob("*_images.csv"))), None)
            register_dataset(
                name,
                json_file,
                folder,
                image_table=str(table) if table else "",
                **_classes_of(folder, name),
            )
            done.append(name)
    return done


def _classes_of(folder: Path, name: str) -> dict:
    """``{"thing_classes": [...]}`` from the converter's summary, if it names this dataset."""
    try:
        with open(folder / "prepare_summary.json", encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return {}
    prefix, classes = summary.get("dataset"), summary.get("classes")
    if isinstance(prefix, str) and name.startswith(prefix + "_") and isinstance(classes, list):
        return {"thing_classes": [str(c) for c in classes]}
    return {}
