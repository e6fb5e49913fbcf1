"""Convert a MURA-v1.1 tree plus box annotations into COCO detection splits.

Outputs (under ``out``)::

    annotations/<name>_{train,val,test}.json      detection splits (COCO + per-image metadata)
    annotations/<name>_test_XR_<PART>.json        the test split per body part
    annotations/<name>_{val,test}_all.json        every image of the split (for image/study
                                                  level evaluation), unannotated ones included
    annotations/<name>_images.csv                 every image of the release (image-level table)
    prepare_summary.json                          counts read / written / skipped by reason
    MURA-v1.1 -> <mura_root>                      a link, when the tree lies elsewhere

Splits: official ``train`` -> ``train``/``val`` by patient (stratified by body part and study
label, seeded); official ``valid`` -> ``test``. Negative-study images are detection negatives;
positive images with boxes keep them; positive images without boxes are left out of the
detection JSONs (they would count as false positives) unless ``keep_unannotated``.
"""

from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from pathlib import Path

from tqdm import tqdm

from ..utils_io import atomic_dir, write_json_atomic
from .boxes import clip_box, read_box_csv
from .coco import build_coco
from .errors import DataError
from .image_size import read_image_size
from .mura import BODY_PARTS, canonical_path, image_path, read_mura_split
from .splits import split_patients

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


def _assign_splits(train_images, val_fraction, seed) -> set:
    strata = defaultdict(lambda: ("", 0))
    for im in sorted(train_images, key=lambda r: r.file_name):
        part, pos = strata[im.patient_id]
        # A patient found under two body parts is stratified by the first, in sorted order.
        strata[im.patient_id] = (part or im.body_part, max(pos, im.study_label))
    return split_patients(dict(strata), val_fraction, seed)


def _link_tree(mura_root: Path, out: Path) -> None:
    link = out / "MURA-v1.1"
    if link.resolve() == mura_root.resolve():
        return
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise DataError(link, f"exists and is not {mura_root}; move it or choose another --out")
    link.symlink_to(os.path.relpath(mura_root.resolve(), out.resolve()))


def prepare_mura(
    mura_root,
    box_files,
    out,
    name: str = "mura",
    val_fraction: float = 0.1,
    seed: int = 0,
    keep_unannotated: bool = False,
) -> dict:
    """Convert MURA + boxes to COCO splits under ``out``; see the module docstring.

    Nothing is written unless the whole conversion succeeds.

    Returns:
        The summary dict, also written to ``out/prepare_summary.json``.
    """
    mura_root, out = Path(mura_root), Path(out)
    images = read_mura_split(mura_root, "train") + read_mura_split(mura_root, "valid")
    by_name = {im.file_name: im for im in images}
    boxes = defaultdict(list)
    n_box_rows = 0
    for bf in box_files:
        for b in read_box_csv(bf, canonical_path):
            n_box_rows += 1
            if b.image not in by_name:
                raise DataError(
                    b.source, f"box names an image not in the MURA CSVs: {b.image}", b.row
                )
            if by_name[b.image].study_label == 0:
                raise DataError(b.source, f"box on an image of a negative study: {b.image}", b.row)
            boxes[b.image].append(b)
    val_patients = _assign_splits([im for im in images if im.split == "train"], val_fraction, seed)
    entries, table, skipped = {"train": [], "val": [], "test": []}, [], Counter()
    every = {"train": [], "val": [], "test": []}  # detection entries + unannotated positives
    boxes_by_id = {}
    for image_id, im in enumerate(
        tqdm(images, desc="reading headers", unit="img", disable=len(images) < 5000), start=1
    ):
        width, height = read_image_size(image_path(mura_root, im.file_name))
        split = (
            "test" if im.split == "valid" else ("val" if im.patient_id in val_patients else "train")
        )
        own = [clip_box(b, width, height) for b in boxes.get(im.file_name, ())]
        annotated = bool(own) or im.study_label == 0
        entry = {
            "id": image_id,
            "file_name": im.file_name,
            "width": width,
            "height": height,
            "body_part": im.body_part,
            "patient_id": im.patient_id,
            "study_id": im.study_id,
            "study_label": im.study_label,
            "image_label": int(bool(own)) if annotated else im.study_label,
            "annotated": annotated,
        }
        in_detection = annotated or keep_unannotated
        every[split].append(entry)
        boxes_by_id[image_id] = [(b.x0, b.y0, b.x1, b.y1, b.label) for b in own]
        if in_detection:
            entries[split].append(entry)
        else:
            skipped["positive_without_boxes"] += 1
        table.append(
            {
                **{k: entry[k] for k in TABLE_FIELDS if k in entry},
                "split": split,
                "n_boxes": len(own),
                "image_id": image_id,
                "in_detection": in_detection,
            }
        )
    classes = sorted({b.label for bs in boxes.values() for b in bs} | {"fracture"})
    jsons = {f"{name}_{s}": entries[s] for s in ("train", "val", "test")}
    for part in BODY_PARTS:
        jsons[f"{name}_test_{part}"] = [e for e in entries["test"] if e["body_part"] == part]
    # Inference sets for image/study-level evaluation: every image of the split, including
    # positive images without boxes (marked "annotated": false; box metrics skip them).
    for s in ("val", "test"):
        jsons[f"{name}_{s}_all"] = every[s]
    summary = {
        "mura_root": str(mura_root),
        "box_files": [str(b) for b in box_files],
        "images_read": len(images),
        "box_rows_read": n_box_rows,
        "written": {
            k: {"images": len(v), "boxes": sum(len(boxes_by_id[e["id"]]) for e in v)}
            for k, v in jsons.items()
        },
        "skipped": dict(sorted(skipped.items())),
        "classes": classes,
        "val_fraction": val_fraction,
        "seed": seed,
    }
    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / "annotations") as tmp:
        for key, ims in jsons.items():
            write_json_atomic(
                tmp / f"{key}.json", build_coco(ims, boxes_by_id, classes, {"description": key})
            )
        with open(tmp / f"{name}_images.csv", "w", newline="") as f:
            w = csv.DictWriter(f, TABLE_FIELDS, lineterminator="\n")
            w.writeheader()
            w.writerows(table)
    write_json_atomic(out / "prepare_summary.json", summary, indent=2)
    _link_tree(mura_root, out)
    return summary
