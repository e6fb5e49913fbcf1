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

Boxes come from CSV or COCO JSON exports (:mod:`.boxes`), several files merged (exact duplicates
counted once). Every image and box goes through the :class:`.validate.Validator`; an image with
a rejected box is kept out of the detection JSONs (it stays in the ``_all`` sets and the table,
``"annotated": false``). Images are read by header only, so the full release (40,005 images)
converts in seconds (``tools/dev/benchmark_prepare_mura.py``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from .boxes import read_box_files
from .class_map import ClassMap, fracture_first
from .coco import build_coco
from .errors import DataError
from .mura import BODY_PARTS, canonical_path, image_path, mura_file_name, read_mura_split
from .output import write_dataset, written_counts
from .splits import split_patients
from .validate import MAX_PIXELS, Validator

__all__ = ["prepare_mura"]


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


def _normalise(path: str) -> str:
    return mura_file_name(path) or canonical_path(path)


def _read_boxes(box_files, by_name: dict, v: Validator, class_map: ClassMap):
    """Box files -> (image file name -> boxes, boxes read); checks them against MURA."""
    boxes = read_box_files(box_files, _normalise, v)
    class_map.check({b.label for b in boxes})
    out, seen = defaultdict(list), set()
    for b in boxes:
        im = by_name.get(b.image)
        if im is None:
            msg = f"box names an image not in the MURA CSVs: {b.image}"
            v.reject("box_unknown_image", b.source, msg, b.row)
        elif im.study_label == 0:
            msg = f"box on an image of a negative study: {b.image}"
            v.reject("box_on_negative_study", b.source, msg, b.row)
            v.taint(b.image)
        elif class_map(b.label) is None:
            v.count("box_class_not_kept")
        elif (key := (b.image, b.x0, b.y0, b.x1, b.y1, class_map(b.label))) in seen:
            v.count("box_duplicate")  # the same box in two merged files is kept once
        else:
            seen.add(key)
            out[b.image].append(replace(b, label=class_map(b.label)))
    return out, len(boxes)


def _image_boxes(im, size, boxes, v: Validator):
    """Checked ``(x0, y0, x1, y1, label)`` of one image, or None if one of them was rejected."""
    own, bad = [], im.file_name in v.tainted
    for b in boxes:
        if b.declared is not None and tuple(b.declared) != tuple(size):
            msg = (
                f"{im.file_name} was annotated at {b.declared[0]}x{b.declared[1]} but is "
                f"{size[0]}x{size[1]}; boxes would be misplaced"
            )
            v.reject("image_size_mismatch", b.source, msg, b.row)
            bad = True
            continue
        xyxy = v.box((b.x0, b.y0, b.x1, b.y1), size, b.source, b.row, im.file_name)
        if xyxy is None:
            bad = True
        else:
            own.append((*xyxy, b.label))
    if bad:
        v.count("image_has_invalid_box")
        v.count("box_of_skipped_image", len(own))
        return None
    return own


def _classes(labels, class_map: ClassMap) -> list[str]:
    return class_map.classes(labels) if class_map.mapping is not None else fracture_first(labels)


def prepare_mura(
    mura_root,
    box_files,
    out,
    name: str = "mura",
    val_fraction: float = 0.1,
    seed: int = 0,
    keep_unannotated: bool = False,
    *,
    class_map: str | ClassMap | None = None,
    skip_invalid: bool = False,
    tolerance: float = 2.0,
    max_pixels: int = MAX_PIXELS,
) -> dict:
    """Convert MURA + boxes to COCO splits under ``out``; see the module docstring.

    Args:
        mura_root: the unpacked ``MURA-v1.1`` folder.
        box_files: CSV and/or COCO JSON box files, merged.
        out: dataset folder (``$DETECTRON2_DATASETS/<folder>``).
        name: dataset name prefix (``mura`` -> ``mura_train`` ...).
        val_fraction, seed: patient-level split of the official train set.
        keep_unannotated: keep positive images without boxes in the detection JSONs.
        class_map: keep / rename / merge box labels (:mod:`.class_map`).
        skip_invalid, tolerance, max_pixels: see :class:`.validate.Validator`.

    Nothing is written unless the whole conversion succeeds.

    Returns:
        The summary dict, also written to ``out/prepare_summary.json``.
    """
    mura_root, out = Path(mura_root), Path(out)
    cmap = class_map if isinstance(class_map, ClassMap) else ClassMap.parse(class_map)
    v = Validator(
        mura_root.parent, skip_invalid=skip_invalid, tolerance=tolerance, max_pixels=max_pixels
    )
    images = read_mura_split(mura_root, "train") + read_mura_split(mura_root, "valid")
    by_name = {im.file_name: im for im in images}
    boxes, n_box_rows = _read_boxes(box_files, by_name, v, cmap)
    val_patients = _assign_splits([im for im in images if im.split == "train"], val_fraction, seed)
    entries = {"train": [], "val": [], "test": []}
    every = {"train": [], "val": [], "test": []}  # detection entries + unannotated positives
    table, boxes_by_id = [], {}
    for image_id, im in enumerate(
        tqdm(images, desc="reading headers", unit="img", disable=len(images) < 5000), start=1
    ):
        where = mura_root / f"{im.split}_image_paths.csv"
        size = v.image(im.file_name, where, im.row, path=image_path(mura_root, im.file_name))
        if size is None:
            v.count("box_of_skipped_image", len(boxes.get(im.file_name, ())))
            continue
        split = (
            "test" if im.split == "valid" else ("val" if im.patient_id in val_patients else "train")
        )
        own = _image_boxes(im, size, boxes.get(im.file_name, ()), v)
        bad, own = own is None, own or []
        annotated = not bad and (bool(own) or im.study_label == 0)
        entry = {
            "id": image_id,
            "file_name": im.file_name,
            "width": size[0],
            "height": size[1],
            "body_part": im.body_part,
            "patient_id": im.patient_id,
            "study_id": im.study_id,
            "study_label": im.study_label,
            "image_label": int(bool(own)) if annotated else im.study_label,
            "annotated": annotated,
        }
        in_detection = annotated or (keep_unannotated and not bad)
        every[split].append(entry)
        boxes_by_id[image_id] = own
        if in_detection:
            entries[split].append(entry)
        elif not bad:
            v.count("positive_without_boxes")
        table.append(
            {**entry, "image_id": image_id, "split": split, "n_boxes": len(own)}
            | {"in_detection": in_detection}
        )
    classes = _classes({b.label for bs in boxes.values() for b in bs}, cmap)
    stems = {f"{name}_{s}": entries[s] for s in ("train", "val", "test")}
    for part in BODY_PARTS:
        stems[f"{name}_test_{part}"] = [e for e in entries["test"] if e["body_part"] == part]
    # Inference sets for image/study-level evaluation: every image of the split, including
    # positive images without boxes (marked "annotated": false; box metrics skip them).
    for s in ("val", "test"):
        stems[f"{name}_{s}_all"] = every[s]
    jsons = {
        k: build_coco(ims, boxes_by_id, classes, {"description": k}) for k, ims in stems.items()
    }
    summary = {
        "dataset": name,
        "source": {"mura_root": str(mura_root), "box_files": [str(b) for b in box_files]},
        "read": {"images": len(images), "boxes": n_box_rows},
        "written": written_counts(jsons),
        **v.report(),
        "classes": classes,
        "options": {
            "val_fraction": val_fraction,
            "seed": seed,
            "keep_unannotated": keep_unannotated,
            "class_map": cmap.mapping,
            "skip_invalid": skip_invalid,
            "tolerance": tolerance,
            "max_pixels": max_pixels,
        },
    }
    write_dataset(out, name, jsons, table, summary)
    _link_tree(mura_root, out)
    return summary
