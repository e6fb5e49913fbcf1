"""Import Pascal VOC XML annotations (VOC devkit, LabelImg, CVAT "PASCAL VOC") as COCO splits.

Layouts understood (``ROOT`` is the folder passed in)::

    ROOT/Annotations/*.xml + ROOT/JPEGImages/*      [+ ROOT/ImageSets/Main/{train,val,test}.txt]
    ROOT/**/*.xml next to their images              (LabelImg's default)
    --annotations DIR --images DIR                  anything else

Each XML names its image (``<filename>``), may state ``<size>``, and has ``<object>`` entries
with ``<name>`` and ``<bndbox>``. Coordinates are VOC's 1-based pixel indices, converted as
Detectron2's ``load_voc_instances`` does (``xmin - 1``, ``ymin - 1``, ``xmax``, ``ymax``);
``difficult`` objects are kept, as there. Split lists name XML stems; ``trainval`` is used as
``train`` when there is no ``train.txt``. Without split lists everything is ``train`` unless
``--val-fraction`` / ``--test-fraction`` split it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .class_map import ClassMap, fracture_first
from .errors import DataError
from .importer import RawBox, Record, convert_records, relative_name, split_by_group
from .validate import MAX_PIXELS, Validator

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def _text(node, tag: str) -> str | None:
    child = node.find(tag) if node is not None else None
    return child.text.strip() if child is not None and child.text else None


def _image_path(xml: Path, filename: str | None, images: Path | None) -> Path:
    folders = [images] if images is not None else []
    folders.append(xml.parent)
    for folder in folders:
        if filename and (folder / filename).is_file():
            return folder / filename
        for ext in IMAGE_EXTS:  # <filename> missing or without extension
            if (folder / (xml.stem + ext)).is_file():
                return folder / (xml.stem + ext)
    return (folders[0] / (filename or xml.stem)) if folders else xml.with_suffix(".jpg")


def read_voc_xml(xml: Path, v: Validator, images: Path | None):
    """``(image path, declared size or None, boxes)``, or None if the XML is unreadable."""
    try:
        tree = ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as e:
        v.reject("annotation_unreadable", xml, f"not a readable VOC XML ({e})")
        return None
    size = tree.find("size")
    w, h = _text(size, "width"), _text(size, "height")
    declared = None
    if w and h and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0:
        declared = (int(w), int(h))  # LabelImg writes 0 when it did not know
    path = _image_path(xml, _text(tree, "filename"), images)
    boxes = []
    for k, obj in enumerate(tree.findall("object"), start=1):
        row = f"object {k}"
        name, bb = _text(obj, "name"), obj.find("bndbox")
        try:
            x0, y0, x1, y1 = (float(_text(bb, t)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            v.reject("box_malformed", xml, "object needs <name> and numeric <bndbox>", row)
            v.taint(str(path))
            continue
        if not name:
            v.reject("box_malformed", xml, "object without <name>", row)
            v.taint(str(path))
            continue
        boxes.append(RawBox((x0 - 1.0, y0 - 1.0, x1, y1), name, str(xml), row))
    return path, declared, boxes


def _split_lists(root: Path) -> dict[str, set] | None:
    folder = root / "ImageSets" / "Main"
    lists = {}
    for split, fname in (("train", "train"), ("val", "val"), ("test", "test")):
        if (folder / f"{fname}.txt").is_file():
            lists[split] = set((folder / f"{fname}.txt").read_text().split())
    if "train" not in lists and (folder / "trainval.txt").is_file():
        lists["train"] = set((folder / "trainval.txt").read_text().split())
    return lists or None


def prepare_voc(
    root,
    out,
    name: str,
    *,
    annotations=None,
    images=None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    group_regex: str | None = None,
    seed: int = 0,
    class_map: str | ClassMap | None = None,
    skip_invalid: bool = False,
    tolerance: float = 2.0,
    max_pixels: int = MAX_PIXELS,
) -> dict:
    """Convert a VOC folder to ``out/annotations/<name>_<split>.json``; see the module doc."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise DataError(root, "VOC folder not found")
    ann_dir = Path(annotations) if annotations else root / "Annotations"
    if images is None and (root / "JPEGImages").is_dir():
        images = root / "JPEGImages"
    images = Path(images) if images is not None else None
    xmls = sorted(ann_dir.glob("*.xml") if ann_dir.is_dir() else root.rglob("*.xml"))
    if not xmls:
        raise DataError(ann_dir if ann_dir.is_dir() else root, "no VOC .xml annotation files")
    v = Validator(root, skip_invalid=skip_invalid, tolerance=tolerance, max_pixels=max_pixels)
    lists = _split_lists(root)
    records, classes = [], {}
    for xml in xmls:
        parsed = read_voc_xml(xml, v, images)
        if parsed is None:
            continue
        path, declared, boxes = parsed
        split = "train"
        if lists is not None:
            split = next((s for s, ids in lists.items() if xml.stem in ids), None)
            if split is None:
                v.count("image_not_in_split")
                v.count("box_of_skipped_image", len(boxes))
                continue
        rel = relative_name(path, root)
        if rel is None:
            v.reject("image_path_escapes_root", xml, f"image {path} lies outside {root}")
            continue
        if str(path) in v.tainted:
            v.taint(rel)
        classes.update(dict.fromkeys(b.label for b in boxes))
        records.append(Record(rel, split, str(xml), None, declared=declared, boxes=boxes))
    cmap = class_map if isinstance(class_map, ClassMap) else ClassMap.parse(class_map)
    cmap.check(classes)
    if val_fraction > 0 or test_fraction > 0:
        if lists is not None:
            raise DataError(root, "ImageSets/Main already defines splits; drop the fractions")
        split_by_group(records, val_fraction, test_fraction, seed, group_regex)
    order = sorted(
        {r.split for r in records} | set(lists or ()), key=["train", "val", "test"].index
    )
    return convert_records(
        records,
        name=name,
        root=root,
        out=out,
        splits=order,
        validator=v,
        class_map=cmap,
        source_classes=fracture_first(classes),
        source={"root": str(root), "annotations": str(ann_dir), "split_lists": sorted(lists or ())},
        options={
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "group_regex": group_regex,
            "seed": seed,
            "skip_invalid": skip_invalid,
            "tolerance": tolerance,
            "max_pixels": max_pixels,
        },
    )
