"""Import a YOLO-format folder (Ultralytics / Roboflow exports, GRAZPEDWRI-DX) as COCO splits.

Layouts understood (``ROOT`` is the folder passed in)::

    ROOT/data.yaml                         names + train/val/test (dirs or .txt lists)
    ROOT/images/{train,val,test}/*.png     + ROOT/labels/{train,val,test}/*.txt
    ROOT/{train,valid,test}/images/*.jpg   + .../labels/*.txt   (Roboflow)
    ROOT/images/*.png + ROOT/labels/*.txt  one split; --val-fraction/--test-fraction split it

A label file has one box per line, ``class cx cy w h`` normalised to 0..1 (a polygon
``class x1 y1 x2 y2 ...`` is reduced to its box); the label of ``.../images/x.png`` is
``.../labels/x.txt`` (the last ``images`` part replaced). An image without a label file is a
negative. Class names come from ``names`` in a YAML file (list or {id: name}) or a list.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from .class_map import ClassMap
from .errors import DataError
from .importer import RawBox, Record, convert_records, relative_name, split_by_group
from .validate import MAX_PIXELS, Validator

IMAGE_EXTS = {".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"}
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def read_names(spec) -> list[str]:
    """Class names from a YAML file (``names:``), a text file (one per line) or ``a,b,c``."""
    path = Path(str(spec))
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        names = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("names")
        if isinstance(names, dict):
            keys = sorted(int(k) for k in names)
            if keys != list(range(len(keys))):
                raise DataError(path, f"names ids must be 0..{len(keys) - 1}, got {keys}")
            names = [names[k] if k in names else names[str(k)] for k in keys]
        if not isinstance(names, list) or not names:
            raise DataError(path, "no 'names' list or mapping")
        return [str(n) for n in names]
    if path.is_file():
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [n.strip() for n in str(spec).split(",") if n.strip()]


def _list_images(entry: Path) -> list[Path]:
    if entry.suffix == ".txt" and entry.is_file():  # a list of image paths
        base = entry.parent
        lines = entry.read_text(encoding="utf-8").splitlines()
        return [Path(os.path.abspath(base / ln.strip())) for ln in lines if ln.strip()]
    return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def _yaml_splits(data_yaml: Path) -> dict[str, list[Path]]:
    cfg = yaml.safe_load(data_yaml.read_text(encoding="utf-8")) or {}
    base = data_yaml.parent / str(cfg.get("path", "") or "")
    splits = {}
    for key, split in SPLIT_NAMES.items():
        for entry in [cfg[key]] if isinstance(cfg.get(key), str) else cfg.get(key) or []:
            p = base / entry
            if not p.exists() and str(entry).startswith("../"):  # Roboflow's "../train/images"
                p = base / str(entry)[3:]
            if not p.exists():
                raise DataError(data_yaml, f"{key}: {entry} not found (looked at {p})")
            splits.setdefault(split, []).extend(_list_images(p))
    return splits


def find_splits(root: Path, data_yaml: Path | None, images: Path | None) -> dict:
    """split -> image paths, from data.yaml, the folder layout, or one flat images/ folder."""
    if images is not None:
        return {"train": _list_images(images)}
    if data_yaml is not None and any(
        k in (yaml.safe_load(data_yaml.read_text()) or {}) for k in SPLIT_NAMES
    ):
        return _yaml_splits(data_yaml)
    found = {}
    for key, split in SPLIT_NAMES.items():
        for d in (root / "images" / key, root / key / "images"):
            if d.is_dir():
                found.setdefault(split, []).extend(_list_images(d))
    if found:
        return found
    if (root / "images").is_dir():
        return {"train": _list_images(root / "images")}
    raise DataError(
        root, "no images/ folder, split folders or data.yaml found (see datasets/README.md)"
    )


def label_path(image: Path, labels: Path | None = None, images: Path | None = None) -> Path:
    """Where YOLO looks for an image's labels (or under ``labels`` mirroring ``images``)."""
    if labels is not None and images is not None:
        return (labels / image.relative_to(images)).with_suffix(".txt")
    parts = list(image.parts)
    i = len(parts) - 1 - parts[::-1].index("images") if "images" in parts[:-1] else None
    if i is None:
        return image.with_suffix(".txt")
    return Path(*parts[:i], "labels", *parts[i + 1 :]).with_suffix(".txt")


def read_label_file(path: Path, names: list[str], v: Validator, image: str) -> list[RawBox]:
    """Boxes of one label file; bad lines are rejected (file and line named)."""
    boxes = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        v.reject("box_malformed", path, f"unreadable label file ({e})")
        v.taint(image)
        return boxes
    for i, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls, values = int(fields[0]), [float(x) for x in fields[1:]]
        except ValueError:
            v.reject("box_malformed", path, f"not 'class cx cy w h' numbers: {line.strip()!r}", i)
            v.taint(image)
            continue
        if len(values) == 4:
            coords = tuple(values)
        elif len(values) >= 6 and len(values) % 2 == 0:  # a segment polygon: take its box
            xs, ys = values[0::2], values[1::2]
            coords = (
                (min(xs) + max(xs)) / 2,
                (min(ys) + max(ys)) / 2,
                max(xs) - min(xs),
                max(ys) - min(ys),
            )
        else:
            v.reject(
                "box_malformed", path, f"expected 5 values (or a polygon), got {len(fields)}", i
            )
            v.taint(image)
            continue
        if not 0 <= cls < len(names):
            v.reject(
                "box_unknown_category", path, f"class {cls} not in 0..{len(names) - 1} {names}", i
            )
            v.taint(image)
            continue
        boxes.append(RawBox(coords, names[cls], str(path), i, normalized=True))
    return boxes


def _under(root: Path, path):
    """``path`` as given if it exists, else relative to ``root`` (``--names meta.yaml``)."""
    if path is None or Path(path).exists() or not (root / path).exists():
        return Path(path) if path is not None else None
    return root / path


def prepare_yolo(
    root,
    out,
    name: str,
    *,
    names=None,
    data_yaml=None,
    images=None,
    labels=None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    group_regex: str | None = None,
    seed: int = 0,
    class_map: str | ClassMap | None = None,
    skip_invalid: bool = False,
    tolerance: float = 2.0,
    max_pixels: int = MAX_PIXELS,
) -> dict:
    """Convert a YOLO folder to ``out/annotations/<name>_<split>.json``; see the module doc.

    Args:
        names: class names (list, ``a,b,c``, a text or YAML file); default: ``data_yaml``.
        data_yaml: YAML with ``names`` and optionally splits (default ``ROOT/data.yaml``).
        images, labels: explicit image and label folders (one split), for other layouts.
        val_fraction, test_fraction, group_regex, seed: split a single-split folder, keeping
            images whose file stem gives the same ``group_regex`` match (group 1 if any, e.g.
            a patient id) together.
    """
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise DataError(root, "YOLO folder not found")
    if data_yaml is None and (root / "data.yaml").is_file():
        data_yaml = root / "data.yaml"
    data_yaml = _under(root, data_yaml)
    names = _under(root, names) if isinstance(names, str) and Path(names).suffix else names
    if names is None and data_yaml is None:
        raise DataError(root, "class names needed: pass --names or a data.yaml with 'names'")
    names = (
        names if isinstance(names, list) else read_names(names if names is not None else data_yaml)
    )
    cmap = class_map if isinstance(class_map, ClassMap) else ClassMap.parse(class_map)
    cmap.check(names)
    v = Validator(root, skip_invalid=skip_invalid, tolerance=tolerance, max_pixels=max_pixels)
    images = Path(images) if images is not None else None
    labels = Path(labels) if labels is not None else None
    splits = find_splits(root, data_yaml, images)
    records, seen, used_labels = [], {}, set()
    for split, paths in splits.items():
        for p in paths:
            rel = relative_name(p, root)
            if rel is None:
                v.reject("image_path_escapes_root", data_yaml or root, f"{p} lies outside {root}")
                continue
            if rel in seen:
                v.reject(
                    "image_in_two_splits", data_yaml or root, f"{rel} is in {seen[rel]} and {split}"
                )
                continue
            seen[rel] = split
            lab = label_path(p, labels, images)
            used_labels.add(lab.resolve())
            boxes = read_label_file(lab, names, v, rel) if lab.is_file() else []
            if not lab.is_file():
                v.warn("image_without_label_file", rel)  # YOLO's convention for a negative
            records.append(Record(rel, split, str(data_yaml or root), None, boxes=boxes))
    label_dirs = {
        label_path(p, labels, images).resolve().parent for ps in splits.values() for p in ps
    }
    for d in sorted(label_dirs):
        for lab in sorted(d.glob("*.txt")):
            if lab.resolve() not in used_labels and lab.name != "classes.txt":
                v.reject("label_file_without_image", lab, "no image for this label file")
    if val_fraction > 0 or test_fraction > 0:
        if set(splits) != {"train"}:
            raise DataError(root, "the folder already defines splits; drop --val/--test-fraction")
        split_by_group(records, val_fraction, test_fraction, seed, group_regex)
    order = [
        s for s in ("train", "val", "test") if any(r.split == s for r in records) or s in splits
    ]
    return convert_records(
        records,
        name=name,
        root=root,
        out=out,
        splits=order,
        validator=v,
        class_map=cmap,
        source_classes=names,
        source={"root": str(root), "data_yaml": str(data_yaml) if data_yaml else None},
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
