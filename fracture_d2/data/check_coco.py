"""Validate a whole COCO detection dict with :class:`~fracture_d2.data.validate.Validator`.

Used by ``datasets/validate_coco.py`` on any COCO JSON + image root, and by importers whose
source is COCO (FracAtlas, box exports from CVAT / Label Studio). Errors name the JSON file and
the image or annotation id.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

from .errors import DataError
from .validate import Validator


def _is_id(x) -> bool:
    return isinstance(x, int | str) and not isinstance(x, bool) and x != ""


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def load_coco(path) -> dict:
    """Read a COCO JSON file, with a one-line error naming it if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "COCO JSON file not found")
    try:
        with open(path, encoding="utf-8") as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"not valid JSON ({e})") from None
    if not isinstance(coco, dict) or not all(
        isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DataError(path, "not a COCO detection file (needs images, annotations, categories)")
    return coco


def _check_images(coco: dict, v: Validator, source, image_dir=None) -> dict:
    """Return image id -> checked entry (width/height from the file)."""
    ids = Counter(im.get("id") for im in coco["images"] if isinstance(im, dict))
    kept, names = {}, set()
    for i, im in enumerate(coco["images"]):
        if not isinstance(im, dict) or not _is_id(im.get("id")) or "file_name" not in im:
            v.reject(
                "image_malformed", source, "needs an integer 'id' and a 'file_name'", f"images[{i}]"
            )
            continue
        row = f"image id {im['id']}"
        if ids[im["id"]] > 1:
            msg = f"{ids[im['id']]} images share this id; annotations cannot tell them apart"
            v.reject("image_duplicate_id", source, msg, row)
            continue
        if im["file_name"] in names:
            v.reject("image_duplicate_file_name", source, f"{im['file_name']} listed twice", row)
            continue
        names.add(im["file_name"])
        declared = None
        if _is_number(im.get("width")) and _is_number(im.get("height")):
            declared = (im["width"], im["height"])
        path = Path(image_dir) / im["file_name"] if image_dir is not None else None
        size = v.image(im["file_name"], source, row, declared, path)
        if size is not None:
            kept[im["id"]] = {**im, "width": size[0], "height": size[1]}
    return kept


def _check_annotation(a, i, images, all_ids, cat_ids, seen, v, source):
    """Return a checked annotation, None if rejected, or "skip" if its image was skipped."""
    if not isinstance(a, dict):
        return v.reject("box_malformed", source, "annotation is not an object", f"annotations[{i}]")
    row = f"annotation id {a['id']}" if _is_id(a.get("id")) else f"annotations[{i}]"
    if _is_id(a.get("id")):
        if a["id"] in seen:
            return v.reject("box_duplicate_id", source, "a second annotation with this id", row)
        seen.add(a["id"])
    if a.get("image_id") not in all_ids:
        return v.reject(
            "box_unknown_image", source, f"image_id {a.get('image_id')!r} not listed", row
        )
    if a["image_id"] not in images:
        return "skip"
    if a.get("category_id") not in cat_ids:
        msg = f"category_id {a.get('category_id')!r} not in categories {sorted(cat_ids)}"
        return v.reject("box_unknown_category", source, msg, row)
    bbox = a.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
        return v.reject("box_malformed", source, f"bbox {bbox!r} is not 4 numbers", row)
    im = images[a["image_id"]]
    x, y, w, h = bbox
    box = v.box((x, y, x + w, y + h), (im["width"], im["height"]), source, row, im["file_name"])
    if box is None:
        return None
    x0, y0, x1, y1 = box
    area = a.get("area")
    if not _is_number(area) or not math.isfinite(area) or area <= 0:
        area = (x1 - x0) * (y1 - y0)
    return {**a, "bbox": [x0, y0, x1 - x0, y1 - y0], "area": min(area, (x1 - x0) * (y1 - y0))}


def validate_coco(coco: dict, v: Validator, source, image_dir=None) -> dict:
    """Check every image and annotation of ``coco``; return the clean COCO dict.

    Images keep their order, ids and extra keys (width/height taken from the file); an image
    with a rejected annotation is left out with all its annotations (``image_has_invalid_box``).
    ``image_dir`` overrides the validator's image root for this file.

    Raises:
        DataError: on the first problem unless the validator skips invalid items.
    """
    cat_ids = set()
    for i, c in enumerate(coco.get("categories", [])):
        if not isinstance(c, dict) or not _is_id(c.get("id")) or c["id"] in cat_ids:
            raise DataError(source, "category needs a unique 'id' and a 'name'", f"categories[{i}]")
        cat_ids.add(c["id"])
    images = _check_images(coco, v, source, image_dir)
    all_ids = {im.get("id") for im in coco["images"] if isinstance(im, dict)}
    anns, tainted, seen = defaultdict(list), set(), set()
    for i, a in enumerate(coco["annotations"]):
        checked = _check_annotation(a, i, images, all_ids, cat_ids, seen, v, source)
        if checked == "skip":
            v.count("box_of_skipped_image")
        elif checked is None:
            if isinstance(a, dict) and a.get("image_id") in images:
                tainted.add(a["image_id"])
        else:
            anns[checked["image_id"]].append(checked)
    for image_id in tainted:
        v.count("image_has_invalid_box")
        v.count("box_of_skipped_image", len(anns.pop(image_id, [])))
    kept = [im for im_id, im in images.items() if im_id not in tainted]
    return {
        **coco,
        "images": kept,
        "annotations": [a for im in kept for a in anns.get(im["id"], [])],
    }


def check_coco_file(json_file, image_root, out=None, **validator_kwargs) -> dict:
    """Validate a COCO JSON file against its images; optionally write the clean copy.

    Args:
        json_file: the COCO JSON.
        image_root: the folder its ``file_name`` values are relative to.
        out: where to write the clean JSON (atomically), if wanted.
        **validator_kwargs: ``skip_invalid``, ``tolerance``, ``max_pixels``.

    Returns:
        A report: images/annotations read and kept, skipped and warnings by reason.
    """
    from .output import dump_json

    coco = load_coco(json_file)
    v = Validator(image_root, **validator_kwargs)
    clean = validate_coco(coco, v, Path(json_file))
    if out is not None:
        dump_json(out, clean)
    return {
        "dataset": Path(json_file).name,
        "read": {"images": len(coco["images"]), "boxes": len(coco["annotations"])},
        "written": {
            str(out or "kept"): {
                "images": len(clean["images"]),
                "boxes": len(clean["annotations"]),
            }
        },
        **v.report(),
        "classes": [c.get("name") for c in coco["categories"] if isinstance(c, dict)],
    }
