"""Load what evaluation needs: a dataset's ground truth as arrays (predictions:
:mod:`.predictions`).

Ground truth comes from the dataset's COCO JSON; per-image metadata (body part, patient,
study, labels, ``annotated``) from its ``images`` entries, filled in from the image-level table
(``<name>_images.csv`` of ``prepare_mura``) where the JSON lacks a field. Bad input raises
:class:`EvaluationError`, one line naming the file and the entry or id.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.errors import DataError

META_FIELDS = ("body_part", "patient_id", "study_id", "study_label", "image_label", "annotated")


class EvaluationError(DataError):
    """Bad evaluation input; ``str(err)`` is ``FILE[:ENTRY]: what is wrong (what to do)``."""


@dataclass
class GroundTruth:
    """A dataset's images (with metadata) and boxes as arrays; box ``b`` lies on image
    ``box_image[b]`` (an index into ``image_ids``). Metadata arrays are None when unknown."""

    name: str
    source: str
    image_ids: np.ndarray  # (I,) COCO image ids
    annotated: np.ndarray  # (I,) bool: boxes were drawn on this image (box metrics use it)
    image_label: np.ndarray  # (I,) int: 1 fracture, 0 normal, -1 unknown
    body_part: np.ndarray | None  # (I,) str
    patient: np.ndarray | None  # (I,) str
    study: np.ndarray | None  # (I,) str
    study_label: np.ndarray | None  # (I,) int
    categories: dict  # category id -> name
    box_image: np.ndarray  # (G,) int
    box_xywh: np.ndarray  # (G, 4) float
    box_category: np.ndarray  # (G,) int
    box_area: np.ndarray  # (G,) float, COCO "area" (w*h if absent)
    box_crowd: np.ndarray  # (G,) bool
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.image_ids)


@dataclass
class Predictions:
    """Detections as arrays; ``image`` indexes :attr:`GroundTruth.image_ids`."""

    source: str
    image: np.ndarray  # (P,) int
    xywh: np.ndarray  # (P, 4) float
    score: np.ndarray  # (P,) float
    category: np.ndarray  # (P,) int
    head: np.ndarray | None = None  # (I,) image-level head probability per gt image (NaN: none)

    def __len__(self) -> int:
        return len(self.score)


def read_json(path, what: str):
    """The JSON document in ``path`` (``what`` it should hold names it in the error).

    Raises:
        EvaluationError: unreadable or not JSON, naming the file (and line).
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise EvaluationError(path, f"cannot read the {what} ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise EvaluationError(path, f"is not valid JSON ({e.msg})", e.lineno) from None


def _read_table(path: Path) -> dict:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "image_id" not in (reader.fieldnames or ()):
                raise EvaluationError(path, "has no image_id column; expected prepare_mura's table")
            rows = {}
            for n, r in enumerate(reader, start=2):
                try:
                    rows[int(r["image_id"])] = r
                except ValueError:
                    raise EvaluationError(
                        path, f"image_id {r['image_id']!r} is no integer", n
                    ) from None
            return rows
    except OSError as e:
        raise EvaluationError(path, f"cannot read the image table ({e.strerror})") from None


def _parse(key: str, value):
    """Normalise a metadata value from JSON or CSV (labels -> int, ids -> str)."""
    if value is None:
        return None
    if value == "":  # present but empty: a body part nobody recorded (FracAtlas) is a group
        return "unknown" if key == "body_part" else None
    if key == "annotated":
        return value if isinstance(value, bool) else str(value).strip().lower() == "true"
    if key in ("study_label", "image_label"):
        return int(value)
    return str(value)


def _check_table(images, table: dict, table_path, json_file, notes) -> None:
    """The table must describe the same images; note images of the split the dataset lacks."""
    ids = {int(im["id"]) for im in images}
    for im in images:
        row = table.get(int(im["id"]))
        if row and "file_name" in row and row["file_name"] != im.get("file_name", row["file_name"]):
            raise EvaluationError(
                table_path,
                f"image_id {im['id']} is {row['file_name']!r} here but {im.get('file_name')!r} "
                f"in {json_file}; use the table of the same prepare run",
            )
    splits = {table[i].get("split") for i in ids if i in table} - {None, ""}
    extra = sum(1 for i, r in table.items() if r.get("split") in splits and i not in ids)
    if extra:
        notes.append(
            f"the image table lists {extra} more images of split {'/'.join(sorted(splits))} "
            "that are not in this dataset (positives without boxes?); image and study level "
            "cover only the dataset's images: evaluate the '<name>_<split>_all' dataset to "
            "include them"
        )


def _metadata(images, table, table_path, json_file, notes) -> dict:
    """Each META_FIELDS column: the JSON value, else the table's; None if any image lacks it."""
    cols = {k: [_parse(k, im.get(k)) for im in images] for k in META_FIELDS}
    if table is not None:
        _check_table(images, table, table_path, json_file, notes)
        for i, im in enumerate(images):
            if not any(cols[k][i] is None for k in META_FIELDS):
                continue
            row = table.get(int(im["id"]))
            if row is None:
                raise EvaluationError(
                    table_path, f"image_id {im['id']} of {json_file} is not in the image table"
                )
            for k in META_FIELDS:
                if cols[k][i] is None:
                    cols[k][i] = _parse(k, row.get(k))
    out = {}
    for k, values in cols.items():
        missing = sum(v is None for v in values)
        if missing and missing < len(values) and k != "annotated":
            notes.append(f"{k} is missing for {missing} of {len(values)} images; not used")
        out[k] = None if missing else values
    return out


def load_ground_truth(json_file, name: str | None = None, image_table=None) -> GroundTruth:
    """Read a COCO JSON (plus optional image table) into a :class:`GroundTruth`.

    Args:
        json_file: the dataset's COCO JSON (``MetadataCatalog.get(name).json_file``).
        name: dataset name for messages (default: the file stem).
        image_table: optional CSV with ``image_id`` and metadata columns; fills fields the
            JSON lacks and is checked against the JSON's file names.
    """
    json_file = Path(json_file)
    coco = read_json(json_file, "dataset JSON")
    if not isinstance(coco, dict) or "images" not in coco:
        raise EvaluationError(json_file, "is not a COCO dataset (no 'images' list)")
    images, anns = coco["images"], coco.get("annotations", [])
    notes = []
    table = _read_table(Path(image_table)) if image_table else None
    meta = _metadata(images, table, image_table, json_file, notes)
    ids = np.array([int(im["id"]) for im in images], np.int64)
    if len(np.unique(ids)) != len(ids):
        raise EvaluationError(json_file, "repeats an image id; re-run the converter")
    index = {int(i): n for n, i in enumerate(ids)}
    box_image, xywh, cat, area, crowd = [], [], [], [], []
    for n, a in enumerate(anns):
        if int(a["image_id"]) not in index:
            raise EvaluationError(
                json_file, f"annotation {a.get('id', n)} names unknown image_id {a['image_id']}"
            )
        box = [float(v) for v in a["bbox"]]
        if len(box) != 4 or box[2] < 0 or box[3] < 0:
            raise EvaluationError(json_file, f"annotation {a.get('id', n)}: bad bbox {a['bbox']}")
        box_image.append(index[int(a["image_id"])])
        xywh.append(box)
        cat.append(int(a["category_id"]))
        area.append(float(a.get("area", box[2] * box[3])))
        crowd.append(bool(a.get("iscrowd", 0)))
    box_image = np.array(box_image, np.int64)
    has_box = np.zeros(len(ids), bool)
    has_box[box_image[~np.array(crowd, bool)]] = True
    # Without the flag every image counts as annotated (a plain COCO dataset).
    annotated = np.array([v is not False for v in meta["annotated"] or [None] * len(ids)], bool)
    if meta["image_label"] is not None:
        image_label = np.array(meta["image_label"], np.int64)
    else:
        # No labels: an annotated image is positive iff it has a box; others are unknown.
        image_label = np.where(annotated, has_box.astype(np.int64), -1)
        notes.append("no image_label: annotated images are labelled by whether they have boxes")

    def arr(k, dtype=object):
        return None if meta[k] is None else np.array(meta[k], dtype)

    return GroundTruth(
        name=name or json_file.stem,
        source=str(json_file),
        image_ids=ids,
        annotated=annotated,
        image_label=image_label,
        body_part=arr("body_part"),
        patient=arr("patient_id"),
        study=arr("study_id"),
        study_label=arr("study_label", np.int64),
        categories={int(c["id"]): c["name"] for c in coco.get("categories", [])},
        box_image=box_image,
        box_xywh=np.array(xywh, np.float64).reshape(-1, 4),
        box_category=np.array(cat, np.int64),
        box_area=np.array(area, np.float64),
        box_crowd=np.array(crowd, bool),
        notes=notes,
    )
