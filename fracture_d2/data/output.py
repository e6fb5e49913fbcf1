"""Write a converted dataset: COCO JSONs, the image-level table, the summary; atomically.

Every converter ends here, so all datasets look alike under ``$DETECTRON2_DATASETS/<folder>``::

    annotations/<name>_<split>.json   COCO (+ per-image metadata), one per split / subset
    annotations/<name>_images.csv     every image that was read: split, labels, #boxes
    prepare_summary.json              read / written / skipped by reason / warnings
    <link> -> the raw tree            when it lies outside the folder (file names go through it)

``annotations/`` is built aside and renamed as a whole, then the summary is replaced, so a
failed run leaves the previous output untouched. JSON keys keep insertion order, so the same
input always gives the same bytes.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from ..utils_io import atomic_dir, atomic_open
from .errors import DataError

TABLE_FIELDS = (
    "image_id",
    "file_name",
    "split",
    "body_part",
    "patient_id",
    "study_id",
    "study_label",
    "image_label",
    "annotated",
    "n_boxes",
    "in_detection",
)


def dump_json(path, obj, indent: int | None = None) -> None:
    """Write JSON atomically; ``json.dumps`` (C encoder) is ~5x faster than ``json.dump``."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.write("\n")


def link_source(source_root, out, link_name: str | None = None) -> str:
    """The prefix that makes file names under ``source_root`` relative to ``out``.

    ``""`` if the tree is ``out`` itself, its relative path if it lies inside ``out``, else
    ``link_name`` (default: the tree's folder name), a link that :func:`make_link` creates
    after a successful write.

    Raises:
        DataError: ``out/<link_name>`` exists and is something else.
    """
    src, out = Path(source_root).resolve(), Path(out)
    out_abs = out.resolve()
    if src == out_abs or out_abs in src.parents:
        return src.relative_to(out_abs).as_posix() if src != out_abs else ""
    name = link_name or src.name
    link = out / name
    if link.exists() and not link.is_symlink() and link.resolve() != src:
        raise DataError(link, f"exists and is not {src}; move it or choose another --out")
    return name


def make_link(source_root, out, prefix: str) -> None:
    """Create or re-point the link ``out/<prefix>`` -> ``source_root`` where one is needed."""
    src, link = Path(source_root).resolve(), Path(out) / prefix
    if not prefix or (link.exists() and link.resolve() == src):
        return
    if link.is_symlink():
        link.unlink()
    link.symlink_to(os.path.relpath(src, Path(out).resolve()))


def write_dataset(out, name: str, jsons: dict, table: list | None, summary: dict) -> None:
    """Write ``jsons`` (stem -> COCO dict), the table and the summary under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "annotations") as tmp:
        for stem, coco in jsons.items():
            dump_json(tmp / f"{stem}.json", coco)
        if table is not None:
            with open(tmp / f"{name}_images.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, TABLE_FIELDS, lineterminator="\n", extrasaction="ignore")
                w.writeheader()
                w.writerows(table)
    dump_json(out / "prepare_summary.json", summary, indent=2)


def written_counts(jsons: dict) -> dict:
    """Images and boxes per written JSON, for the summary."""
    return {
        k: {"images": len(c["images"]), "boxes": len(c["annotations"])} for k, c in jsons.items()
    }


def format_summary(summary: dict, out, summary_file=None) -> str:
    """A few human-readable lines: read, written per split, skipped and warnings by reason."""
    read = ", ".join(f"{v} {k}" for k, v in summary.get("read", {}).items())
    lines = [f"{summary.get('dataset', '?')}: read {read}"]
    for stem, n in summary.get("written", {}).items():
        lines.append(f"  wrote   {stem:<32} {n['images']:>7} images {n['boxes']:>7} boxes")
    for reason, n in summary.get("skipped", {}).items():
        lines.append(f"  skipped {reason:<32} {n:>7}")
    for reason, n in summary.get("warnings", {}).items():
        files = summary.get("warning_files", {}).get(reason, [])
        more = ", ..." if n > len(files) else ""
        shown = f" ({', '.join(files[:3])}{', ...' if len(files) > 3 else more})" if files else ""
        lines.append(f"  warning {reason:<32} {n:>7}{shown}")
    where = summary_file or Path(out) / "prepare_summary.json"
    lines.append(f"  classes {summary.get('classes')}; summary: {where}")
    return "\n".join(lines)
