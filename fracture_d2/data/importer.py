"""The common back half of the FracAtlas, YOLO and VOC importers.

An importer turns its layout into :class:`Record` objects (one per image: where it is listed,
its split, metadata and raw boxes); :func:`convert_records` validates them with the one
:class:`~fracture_d2.data.validate.Validator`, applies the class map, and writes
``annotations/<name>_<split>.json`` (one per split, ``split`` order), ``<name>_images.csv``
and ``prepare_summary.json`` atomically. Image ids follow the sorted file names, so the output
does not depend on the order a file system lists files in.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .class_map import ClassMap
from .coco import build_coco
from .output import link_source, make_link, write_dataset, written_counts
from .splits import split_patients
from .validate import Validator


@dataclass
class RawBox:
    """A box as read: pixel ``(x0, y0, x1, y1)``, or YOLO's normalised ``(cx, cy, w, h)``."""

    coords: tuple
    label: str
    where: str
    row: int | str | None = None
    normalized: bool = False

    def pixels(self, size) -> tuple:
        if not self.normalized:
            return self.coords
        (cx, cy, w, h), (iw, ih) = self.coords, size
        return ((cx - w / 2) * iw, (cy - h / 2) * ih, (cx + w / 2) * iw, (cy + h / 2) * ih)


@dataclass
class Record:
    """One image as an importer found it."""

    name: str  # path relative to the source root, "/"-separated
    split: str
    where: str  # the file that lists the image (for messages)
    row: int | str | None = None
    declared: tuple | None = None  # (width, height) the annotation states
    size: tuple | None = None  # already checked (e.g. by validate_coco): skip the image check
    boxes: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)  # extra keys of the COCO image entry
    image_label: int | None = None  # None: 1 if boxes are kept, else 0


def relative_name(path, root) -> str | None:
    """``path`` relative to ``root`` ("/"-separated), or None if it lies outside. Lexical, so
    image folders that are symlinks to another disk still count as inside."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    return None if rel == ".." or rel.startswith(".." + os.sep) else Path(rel).as_posix()


def split_by_group(records, val_fraction: float, test_fraction: float, seed: int, group_regex):
    """Set ``record.split`` to train/val/test, whole groups at a time, stratified by whether a
    group has boxes. A group is what ``group_regex`` matches in the file stem (its group 1 if
    it has one; e.g. ``^(\\d+)_`` for a leading patient id), else the file itself."""
    pattern = re.compile(group_regex) if group_regex else None

    def group(name: str) -> str:
        m = pattern.search(PurePosixPath(name).stem) if pattern else None
        return (m.group(1) if m.groups() else m.group(0)) if m else name

    if not 0 <= test_fraction < 1 or not 0 <= val_fraction < 1 - test_fraction:
        raise ValueError(
            f"need 0 <= test < 1 and val < 1 - test, got {val_fraction}, {test_fraction}"
        )
    strata = {}
    for r in records:
        g = group(r.name)
        strata[g] = max(strata.get(g, 0), int(bool(r.boxes)))
    test = split_patients(strata, test_fraction, seed) if test_fraction > 0 else set()
    rest = {g: s for g, s in strata.items() if g not in test}
    share = val_fraction / (1 - test_fraction) if val_fraction > 0 else 0.0
    val = split_patients(rest, min(share, 0.99), seed + 1) if share > 0 else set()
    for r in records:
        g = group(r.name)
        r.split = "test" if g in test else "val" if g in val else "train"


def _boxes(rec: Record, size, v: Validator, cmap: ClassMap):
    """Kept ``(x0, y0, x1, y1, label)`` of one record, or None if a box was rejected."""
    own, bad = [], rec.name in v.tainted
    for b in rec.boxes:
        label = cmap(b.label)
        if label is None:
            v.count("box_class_not_kept")
            continue
        xyxy = v.box(b.pixels(size), size, b.where, b.row, rec.name)
        if xyxy is None:
            bad = True
        else:
            own.append((*xyxy, label))
    if bad:
        v.count("image_has_invalid_box")
        v.count("box_of_skipped_image", len(own))
        return None
    return own


def convert_records(
    records: list[Record],
    *,
    name: str,
    root,
    out,
    splits: list[str],
    validator: Validator,
    class_map: ClassMap,
    source_classes: list[str],
    source: dict,
    options: dict,
    link_name: str | None = None,
) -> dict:
    """Validate ``records`` and write the dataset; return the summary (see module docstring)."""
    v, root, out = validator, Path(root), Path(out)
    prefix = link_source(root, out, link_name)
    classes = class_map.classes(source_classes)
    entries = {s: [] for s in splits}
    table, boxes_by_id = [], {}
    for image_id, rec in enumerate(sorted(records, key=lambda r: r.name), start=1):
        size = rec.size or v.image(rec.name, rec.where, rec.row, rec.declared)
        if size is None:
            v.count("box_of_skipped_image", len(rec.boxes))
            continue
        own = _boxes(rec, size, v, cmap=class_map)
        bad, own = own is None, own or []
        label = rec.image_label if rec.image_label is not None else int(bool(own))
        annotated = not bad and (bool(own) or label == 0)
        if not annotated and not bad:
            v.count("positive_without_boxes")
        file_name = str(PurePosixPath(prefix, rec.name)) if prefix else rec.name
        entry = {"id": image_id, "file_name": file_name, "width": size[0], "height": size[1]}
        entry.update(rec.meta, image_label=label, annotated=annotated)
        boxes_by_id[image_id] = own
        if annotated:
            entries[rec.split].append(entry)
        table.append(
            {
                "image_id": image_id,
                "file_name": file_name,
                "split": rec.split,
                "body_part": rec.meta.get("body_part", ""),
                "patient_id": rec.meta.get("patient_id", ""),
                "study_id": rec.meta.get("study_id", PurePosixPath(rec.name).stem),
                "study_label": rec.meta.get("study_label", label),
                "image_label": label,
                "annotated": annotated,
                "n_boxes": len(own),
                "in_detection": annotated,
            }
        )
    jsons = {
        f"{name}_{s}": build_coco(entries[s], boxes_by_id, classes, {"description": f"{name}_{s}"})
        for s in splits
    }
    summary = {
        "dataset": name,
        "source": source,
        "read": {"images": len(records), "boxes": sum(len(r.boxes) for r in records)},
        "written": written_counts(jsons),
        **v.report(),
        "classes": classes,
        "options": {**options, "class_map": class_map.mapping},
    }
    write_dataset(out, name, jsons, table, summary)
    make_link(root, out, prefix)
    return summary
