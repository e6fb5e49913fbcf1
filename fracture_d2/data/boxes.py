"""Read fracture boxes from the user's annotation files: CSV or COCO JSON exports.

CSV: ``image_path,x_min,y_min,x_max,y_max[,label]``, pixel coordinates, header optional; a box
from 10 to 20 is 10 px wide; the optional 6th column names the class (default ``fracture``).

COCO JSON as annotation tools export it (CVAT "COCO 1.0", Label Studio "COCO"): ``bbox`` is
``[x, y, w, h]`` in pixels, the class is the category *name*, and each image's ``file_name``
is mapped to the dataset's file names by ``normalise`` (for MURA: the path tail
``train/XR_.../imageN.png``). The export's width/height are kept to be checked against the
image file.

Parsing problems go through the :class:`~fracture_d2.data.validate.Validator` (stop, or skip
and count); coordinates are checked later, once image sizes are known.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .check_coco import load_coco
from .errors import DataError
from .validate import Validator

_HEADER = ("image_path", "image", "file_name", "path", "filename")


@dataclass(frozen=True)
class Box:
    """One box of one image, with where it came from (for error messages)."""

    image: str
    x0: float
    y0: float
    x1: float
    y1: float
    label: str
    source: str
    row: int | str
    declared: tuple | None = None  # (width, height) the annotation tool saw, if it says


def read_box_csv(path, normalise=lambda p: p, validator: Validator | None = None) -> list[Box]:
    """Parse a box CSV; ``normalise`` maps the path column to the dataset's file names.

    Raises:
        DataError: missing file; a wrong column count or a non-numeric coordinate (unless the
            validator skips invalid rows; their image is then marked tainted). The message
            names file and row.
    """
    v = validator or Validator()
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "box file not found")
    boxes = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for i, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if i == 1 and row[0].strip().lower() in _HEADER:
                continue
            if len(row) not in (5, 6):
                msg = f"expected image_path,x_min,y_min,x_max,y_max[,label], got {len(row)} columns"
                v.reject("box_malformed", path, msg, i)
                v.taint(normalise(row[0]))
                continue
            try:
                x0, y0, x1, y1 = (float(c) for c in row[1:5])
            except ValueError:
                v.reject("box_malformed", path, f"non-numeric coordinate in {row[1:5]}", i)
                v.taint(normalise(row[0]))
                continue
            label = row[5].strip() if len(row) == 6 and row[5].strip() else "fracture"
            boxes.append(Box(normalise(row[0]), x0, y0, x1, y1, label, str(path), i))
    return boxes


def read_box_coco(path, normalise=lambda p: p, validator: Validator | None = None) -> list[Box]:
    """Parse a COCO JSON box export; see the module docstring.

    ``normalise`` returns None for a file name that is not one of the dataset's; its boxes are
    rejected as ``box_unknown_image``.
    """
    v = validator or Validator()
    coco = load_coco(path)
    cats = {c.get("id"): str(c.get("name")) for c in coco["categories"] if isinstance(c, dict)}
    images = {im.get("id"): im for im in coco["images"] if isinstance(im, dict)}
    boxes, seen = [], set()
    for i, a in enumerate(coco["annotations"]):
        a = a if isinstance(a, dict) else {}
        row = f"annotation id {a['id']}" if "id" in a else f"annotations[{i}]"
        if "id" in a:
            if a["id"] in seen:
                v.reject("box_duplicate_id", path, "a second annotation with this id", row)
                continue
            seen.add(a["id"])
        im = images.get(a.get("image_id"))
        name = normalise(str(im.get("file_name", ""))) if im is not None else None
        if name is None:
            what = f"file_name {im.get('file_name')!r}" if im else f"image_id {a.get('image_id')!r}"
            v.reject("box_unknown_image", path, f"{what} matches no image of the dataset", row)
            continue
        if a.get("category_id") not in cats:
            v.reject("box_unknown_category", path, f"category_id {a.get('category_id')!r}", row)
            v.taint(name)
            continue
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            v.reject("box_malformed", path, f"bbox {bbox!r} is not [x, y, w, h]", row)
            v.taint(name)
            continue
        try:
            x, y, w, h = (float(c) for c in bbox)
        except (TypeError, ValueError):
            v.reject("box_malformed", path, f"bbox {bbox!r} is not 4 numbers", row)
            v.taint(name)
            continue
        declared = (im["width"], im["height"]) if "width" in im and "height" in im else None
        boxes.append(
            Box(name, x, y, x + w, y + h, cats[a["category_id"]], str(path), row, declared)
        )
    return boxes


def read_box_files(paths, normalise=lambda p: p, validator: Validator | None = None) -> list[Box]:
    """Read and concatenate box files: ``*.json`` as COCO exports, anything else as CSV."""
    boxes = []
    for p in paths:
        read = read_box_coco if Path(p).suffix.lower() == ".json" else read_box_csv
        boxes.extend(read(p, normalise, validator))
    return boxes
