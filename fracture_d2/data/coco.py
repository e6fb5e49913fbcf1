"""Build COCO detection JSON from image records and boxes."""

from __future__ import annotations

DEFAULT_CLASSES = ("fracture",)


def coco_categories(classes=DEFAULT_CLASSES) -> list[dict]:
    """COCO categories with ids 1..N (Detectron2 maps them to contiguous 0..N-1 on load)."""
    return [{"id": i, "name": c, "supercategory": "bone"} for i, c in enumerate(classes, 1)]


def build_coco(
    images: list[dict], boxes_by_image: dict, classes=DEFAULT_CLASSES, info: dict | None = None
) -> dict:
    """Assemble a COCO dict.

    Args:
        images: COCO ``images`` entries (``id``, ``file_name``, ``width``, ``height`` plus any
            per-image metadata); written in the given order.
        boxes_by_image: image id -> list of ``(x0, y0, x1, y1, label)`` in pixels.
        classes: class names; ``label`` values must be among them.
        info: optional COCO ``info`` block.

    Returns:
        The COCO dict; annotation ids run 1..N in image order, so output is reproducible.
    """
    cat_id = {c: i for i, c in enumerate(classes, 1)}
    anns = []
    for img in images:
        for x0, y0, x1, y1, label in boxes_by_image.get(img["id"], ()):
            w, h = x1 - x0, y1 - y0
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "category_id": cat_id[label],
                    "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                }
            )
    return {
        "info": info or {},
        "images": images,
        "annotations": anns,
        "categories": coco_categories(classes),
    }
