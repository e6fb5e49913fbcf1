"""Convert the FracAtlas release (Abedeen et al., Sci. Data 2023, CC BY 4.0) to COCO splits.

Release layout (the only code that knows it)::

    FracAtlas/images/{Fractured,Non_fractured}/IMG*.jpg
    FracAtlas/Annotations/COCO JSON/COCO_fracture_masks.json   fractured images only, category 0
    FracAtlas/dataset.csv            image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,
                                     fractured,fracture_count,frontal,lateral,oblique
    FracAtlas/Utilities/Fracture Split/{train,valid,test}.csv   fractured images only

Policy for the release's quirks:

- The COCO JSON is checked as a whole (:func:`.check_coco.validate_coco`); its category
  ``fractured`` (id 0) becomes ``fracture`` with id 1 (``--class-map`` to change).
- Negatives exist only in dataset.csv: they are spread over the splits that exist, seeded, in
  the ratio of the fractured images in those splits. A split file may be absent (the public
  subset has no test.csv): only the splits present are written.
- An image with boxes that dataset.csv marks 0 is a fracture (the boxes win); counted as the
  warning ``label_conflict``. Fractured images in no split file are skipped and counted.
- JPEGs truncated in the release (a few bytes short) that OpenCV decodes are kept and counted
  (``image_truncated_decodable``); undecodable ones are rejected. 1-channel JPEGs and varying
  sizes are fine; sizes are read from headers with EXIF orientation applied.
- Polygons are not carried over (the detectors here train on boxes; the release keeps them).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .check_coco import load_coco, validate_coco
from .class_map import ClassMap
from .errors import DataError
from .importer import RawBox, Record, convert_records
from .validate import MAX_PIXELS, Validator

COCO_JSON = "Annotations/COCO JSON/COCO_fracture_masks.json"
SPLIT_DIR = "Utilities/Fracture Split"
SPLIT_FILES = {"train": "train.csv", "val": "valid.csv", "test": "test.csv"}
PARTS = ("hand", "leg", "hip", "shoulder")
VIEWS = ("frontal", "lateral", "oblique")
DEFAULT_CLASS_MAP = "fractured=fracture"


def read_dataset_csv(path: Path) -> dict[str, dict]:
    """image file name -> row of dataset.csv (flags as ints)."""
    if not path.is_file():
        raise DataError(path, "missing; the FracAtlas release has dataset.csv at its root")
    rows = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        need = {"image_id", "fractured", *PARTS, "mixed"}
        if not need <= set(reader.fieldnames or ()):
            raise DataError(path, f"needs columns {sorted(need)}, has {reader.fieldnames}", 1)
        for i, row in enumerate(reader, start=2):
            try:
                flags = {
                    k: int(v) for k, v in row.items() if k != "image_id" and v not in ("", None)
                }
            except ValueError:
                raise DataError(path, f"non-integer flag in {row}", i) from None
            rows[row["image_id"].strip()] = {**flags, "row": i}
    return rows


def _metadata(row: dict | None) -> dict:
    if row is None:
        return {"body_part": ""}
    parts = [p for p in PARTS if row.get(p)]
    body = "mixed" if row.get("mixed") or len(parts) > 1 else (parts[0] if parts else "")
    return {
        "body_part": body,
        "body_parts": parts,
        "views": [v for v in VIEWS if row.get(v)],
        "hardware": row.get("hardware", 0),
        "multiscan": row.get("multiscan", 0),
    }


def _read_splits(root: Path, v: Validator, known: set) -> dict[str, list[str]]:
    """split -> fractured image names, from the split files that exist."""
    folder = root / SPLIT_DIR
    splits, seen = {}, {}
    for split, fname in SPLIT_FILES.items():
        path = folder / fname
        if not path.is_file():
            continue
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
        splits[split] = []
        for i, row in enumerate(rows, start=1):
            name = row[0].strip() if row else ""
            if not name or (i == 1 and name == "image_id"):
                continue
            if name in seen:
                msg = f"{name} is also in {seen[name]}; a split file lists each image once"
                v.reject("image_in_two_splits", path, msg, i)
                continue
            seen[name] = fname
            if name not in known:
                msg = f"{name} has no entry in {COCO_JSON}; split files list fractured images"
                v.reject("image_not_in_annotations", path, msg, i)
                continue
            splits[split].append(name)
    if not splits:
        raise DataError(folder, f"no split file ({', '.join(SPLIT_FILES.values())}) found")
    return splits


def _spread_negatives(negatives: list[str], counts: dict[str, int], seed: int) -> dict:
    """negative name -> split, in the ratio of ``counts`` (largest remainder), seeded."""
    splits = list(counts)
    weights = np.array([counts[s] for s in splits], float)
    raw = len(negatives) * weights / max(weights.sum(), 1.0)
    n = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - n), kind="stable")[: len(negatives) - n.sum()]:
        n[i] += 1
    ordered = sorted(negatives)
    shuffled = [ordered[j] for j in np.random.default_rng(seed).permutation(len(ordered))]
    bounds = np.concatenate([[0], np.cumsum(n)])
    return {
        name: splits[k] for k in range(len(splits)) for name in shuffled[bounds[k] : bounds[k + 1]]
    }


def _fractured_records(root, coco, v, splits, table):
    """Records of the fractured images (checked COCO), with their official split."""
    json_path = root / COCO_JSON
    clean = validate_coco(coco, v, json_path, image_dir=root / "images" / "Fractured")
    cats = {c["id"]: str(c["name"]) for c in coco["categories"]}
    split_of = {n: s for s, names in splits.items() for n in names}
    anns = {}
    for a in clean["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    records = []
    for im in clean["images"]:
        name = im["file_name"]
        row = table.get(name)
        if name not in split_of:
            v.count("image_not_in_split")
            v.count("box_of_skipped_image", len(anns.get(im["id"], [])))
            continue
        if row is not None and not row.get("fractured"):
            v.warn("label_conflict", name)  # in Fractured/ with boxes, dataset.csv says 0
        boxes = [
            RawBox(
                (x, y, x + w, y + h),
                cats[a["category_id"]],
                str(json_path),
                f"annotation id {a['id']}",
            )
            for a in anns.get(im["id"], [])
            for x, y, w, h in [a["bbox"]]
        ]
        meta = _metadata(row)
        records.append(
            Record(
                f"images/Fractured/{name}",
                split_of[name],
                str(json_path),
                f"image id {im['id']}",
                size=(im["width"], im["height"]),
                boxes=boxes,
                meta=meta,
                image_label=1,
            )
        )
    return records


def prepare_fracatlas(
    root,
    out,
    name: str = "fracatlas",
    seed: int = 0,
    *,
    class_map: str | ClassMap | None = DEFAULT_CLASS_MAP,
    skip_invalid: bool = False,
    tolerance: float = 2.0,
    max_pixels: int = MAX_PIXELS,
) -> dict:
    """Convert a FracAtlas release folder to ``out/annotations/<name>_{train,val,test}.json``.

    Returns:
        The summary dict, also written to ``out/prepare_summary.json``.
    """
    root, out = Path(root), Path(out)
    if not (root / "images").is_dir():
        raise DataError(root, "not a FracAtlas folder (no images/); pass the unpacked release")
    cmap = class_map if isinstance(class_map, ClassMap) else ClassMap.parse(class_map)
    v = Validator(root, skip_invalid=skip_invalid, tolerance=tolerance, max_pixels=max_pixels)
    coco = load_coco(root / COCO_JSON)
    cmap.check(str(c.get("name")) for c in coco["categories"])
    table = read_dataset_csv(root / "dataset.csv")
    in_coco = {im.get("file_name") for im in coco["images"] if isinstance(im, dict)}
    splits = _read_splits(root, v, in_coco)
    records = _fractured_records(root, coco, v, splits, table)
    counts = {s: sum(r.split == s for r in records) for s in splits}
    on_disk = {p.name: p for p in sorted((root / "images").rglob("*")) if p.is_file()}
    negatives = []
    for n, row in table.items():
        if n in in_coco:
            continue
        folder = on_disk[n].parent.name if n in on_disk else ""
        if row.get("fractured") or folder == "Fractured":
            if not row.get("fractured"):
                v.warn("label_conflict", n)  # in Fractured/ without boxes, dataset.csv says 0
            v.count("positive_without_boxes")  # a fracture without boxes: not a negative
        else:
            negatives.append(n)
    for n, split in _spread_negatives(negatives, counts, seed).items():
        rel = (
            on_disk[n].relative_to(root).as_posix() if n in on_disk else f"images/Non_fractured/{n}"
        )
        records.append(
            Record(
                rel,
                split,
                str(root / "dataset.csv"),
                table[n]["row"],
                meta=_metadata(table[n]),
                image_label=0,
            )
        )
    # Files on disk in neither dataset.csv nor the COCO JSON: no label to trust.
    v.count("image_unlisted", sum(1 for n in on_disk if n not in in_coco and n not in table))
    return convert_records(
        records,
        name=name,
        root=root,
        out=out,
        splits=list(splits),
        validator=v,
        class_map=cmap,
        source_classes=[str(c["name"]) for c in coco["categories"]],
        source={
            "root": str(root),
            "split_files": [SPLIT_FILES[s] for s in splits],
            "negatives_per_split": {
                s: sum(1 for r in records if r.split == s and r.image_label == 0) for s in splits
            },
        },
        options={
            "seed": seed,
            "skip_invalid": skip_invalid,
            "tolerance": tolerance,
            "max_pixels": max_pixels,
        },
        link_name="FracAtlas",
    )
