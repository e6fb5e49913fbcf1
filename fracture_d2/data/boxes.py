"""Read fracture boxes from a CSV: ``image_path,x_min,y_min,x_max,y_max[,label]``.

Pixel coordinates, ``x_max``/``y_max`` exclusive of nothing (a box from 10 to 20 is 10 px wide).
A header row is optional; a 6th ``label`` column names the class (default ``fracture``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError


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
    row: int


def read_box_csv(path: str | Path, normalise=lambda p: p) -> list[Box]:
    """Parse a box CSV; ``normalise`` maps the path column to the dataset's file names.

    Raises:
        DataError: missing file, wrong column count, a non-numeric or non-finite coordinate,
            or a box with zero or negative width/height; the message names file and row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "box file not found")
    boxes = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for i, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if i == 1 and row[0].strip().lower() in ("image_path", "image", "file_name", "path"):
                continue  # header
            if len(row) not in (5, 6):
                raise DataError(
                    path,
                    "expected image_path,x_min,y_min,x_max,y_max[,label], "
                    f"got {len(row)} columns",
                    i,
                )
            try:
                x0, y0, x1, y1 = (float(v) for v in row[1:5])
            except ValueError:
                raise DataError(path, f"non-numeric coordinate in {row[1:5]}", i) from None
            if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
                raise DataError(path, f"non-finite coordinate in {row[1:5]}", i)
            if x1 <= x0 or y1 <= y0:
                raise DataError(
                    path, f"empty box (x_max <= x_min or y_max <= y_min): {row[1:5]}", i
                )
            label = row[5].strip() if len(row) == 6 and row[5].strip() else "fracture"
            boxes.append(Box(normalise(row[0]), x0, y0, x1, y1, label, str(path), i))
    return boxes


def clip_box(box: Box, width: int, height: int, tolerance: float = 2.0) -> Box:
    """Clip a box to the image if it overshoots by at most ``tolerance`` px, else raise."""
    if (
        box.x0 < -tolerance
        or box.y0 < -tolerance
        or box.x1 > width + tolerance
        or box.y1 > height + tolerance
    ):
        raise DataError(
            box.source,
            f"box {[box.x0, box.y0, box.x1, box.y1]} lies outside "
            f"{box.image} ({width}x{height})",
            box.row,
        )
    return Box(
        box.image,
        max(0.0, box.x0),
        max(0.0, box.y0),
        min(float(width), box.x1),
        min(float(height), box.y1),
        box.label,
        box.source,
        box.row,
    )
