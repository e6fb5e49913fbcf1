"""Numbers next to the pictures: counts at the drawing threshold, the last COCOEvaluator result
of a training log, and ``selection.json`` (which images each section shows, with counts)."""

from __future__ import annotations

from fracture_d2.utils_io import write_json_atomic

from .html import Table
from .selection import ImageResult, summarize

_COLUMNS = {
    "judged_images": "judged images",
    "lesions": "lesions",
    "true_positives": "TP",
    "false_positives": "FP",
    "missed": "missed",
    "sensitivity": "sensitivity",
    "fp_per_image": "FP/image",
    "precision": "precision",
}


def threshold_table(results: list[ImageResult], threshold: float, iou: float) -> Table:
    """TP/FP/missed, sensitivity and FP per image at the drawing threshold, per body part."""
    groups = {"all": results}
    for part in sorted({r.body_part for r in results if r.body_part}):
        groups[part] = [r for r in results if r.body_part == part]
    rows = [[g] + [summarize(rs)[k] for k in _COLUMNS] for g, rs in groups.items()]
    title = f"At score ≥ {threshold:g}, IoU ≥ {iou:g} (the pictures' colours)"
    return Table(title, ["body part", *_COLUMNS.values()], rows)


def training_table(records: dict[int, dict]) -> Table | None:
    """The last COCOEvaluator result logged in a training ``metrics.json``, if any."""
    last = next(
        (r for r in reversed(records.values()) if any(k.endswith("bbox/AP") for k in r)), None
    )
    if last is None:
        return None
    keys = sorted(k for k in last if "bbox/" in k)
    title = f"COCOEvaluator at iteration {last['iteration']} (training log)"
    return Table(title, ["metric", "value"], [[k, last[k]] for k in keys])


def write_selection(path, sections: dict, panels: dict, results, threshold, iou) -> None:
    """``selection.json``: the chosen images per section with their counts, for scripts."""
    doc = {
        "threshold": threshold,
        "iou": iou,
        "summary": summarize(results),
        "sections": {
            name: [
                {
                    "image_id": r.image_id,
                    "body_part": r.body_part,
                    "image_score": r.image_score,
                    "tp": r.n_tp,
                    "fp": r.n_fp,
                    "missed": r.n_missed,
                    "max_fp_score": r.max_fp_score,
                    "panel": panels.get(r.image_id),
                }
                for r in rs
            ]
            for name, rs in sections.items()
        },
    }
    write_json_atomic(path, doc, indent=1)
