"""Find and read the images inference runs on: files, folders (recursive), CSV lists of paths;
PNG/JPEG/BMP/TIFF through OpenCV and DICOM through pydicom."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fracture_d2.data.dicom import is_dicom

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# A CSV's path column is found by one of these header names; without a header, column 1.
PATH_COLUMNS = ("path", "file", "file_name", "filename", "image", "image_path")


@dataclass
class Skipped:
    """An input that was not processed, and why (one line, naming the file)."""

    file: str
    reason: str


@dataclass
class InputList:
    """What :func:`collect_inputs` found: files to read, inputs skipped, files left aside."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)  # reason -> count, e.g. "suffix .txt"


def _is_image(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or is_dicom(path)


def read_path_csv(csv_path, root=None) -> tuple[list[Path], list[Skipped]]:
    """Paths listed in a CSV file (a header naming a path column, or paths in column 1).

    Relative paths are resolved against ``root`` (default: the CSV's folder). Rows whose file
    does not exist are returned as skipped, naming the CSV row.
    """
    csv_path = Path(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    files, skipped = [], []
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    column, start = 0, 0
    if rows and any(c.strip().lower() in PATH_COLUMNS for c in rows[0]):
        header = [c.strip().lower() for c in rows[0]]
        column = next(i for i, c in enumerate(header) if c in PATH_COLUMNS)
        start = 1
    for row_no, row in enumerate(rows[start:], start + 1):
        cell = row[column].strip() if len(row) > column else ""
        if not cell:
            skipped.append(Skipped(f"{csv_path}:{row_no}", "no path in this row"))
            continue
        path = Path(cell).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            skipped.append(
                Skipped(
                    f"{csv_path}:{row_no}",
                    f"file not found: {path} (relative paths are resolved against {root}; "
                    "set another folder with --root)",
                )
            )
            continue
        files.append(path)
    return files, skipped


def collect_inputs(inputs, root=None) -> InputList:
    """Expand command-line inputs into image files, in a stable order.

    Args:
        inputs: image files, DICOM files, folders (searched recursively for
            ``IMAGE_SUFFIXES``, DICOM suffixes and suffix-less DICOM files) and ``.csv`` lists.
        root: folder for relative paths in CSV lists (default: each CSV's folder).

    Returns:
        An :class:`InputList`; a file reached twice is processed once (counted in ``ignored``).
    """
    out = InputList()
    seen = set()

    def add(path: Path):
        key = path.resolve()
        if key in seen:
            out.ignored["listed more than once"] += 1
        else:
            seen.add(key)
            out.files.append(path)

    for item in map(Path, inputs):
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if p.is_file()):
                if _is_image(path):
                    add(path)
                else:
                    out.ignored[f"not an image (suffix {path.suffix or 'none'!r})"] += 1
        elif item.suffix.lower() == ".csv" and item.is_file():
            files, skipped = read_path_csv(item, root)
            out.skipped.extend(skipped)
            for path in files:
                add(path)
        elif item.is_file():
            add(item)  # named explicitly: try to read it whatever its suffix
        else:
            out.skipped.append(Skipped(str(item), "no such file or folder"))
    return out
