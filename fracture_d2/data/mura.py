"""Read the MURA-v1.1 release layout: image lists, study labels, per-image metadata.

This module (with :mod:`fracture_d2.data.convert_mura`) is the only code that knows MURA's
layout. Paths in the release CSVs look like
``MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from .errors import DataError

BODY_PARTS = (
    "XR_ELBOW",
    "XR_FINGER",
    "XR_FOREARM",
    "XR_HAND",
    "XR_HUMERUS",
    "XR_SHOULDER",
    "XR_WRIST",
)
_IMAGE_RE = re.compile(
    r"^(?P<root>[^/]+)/(?P<split>train|valid)/(?P<part>XR_[A-Z]+)/patient(?P<patient>\d+)/"
    r"(?P<study>study\d+_(?P<label>positive|negative))/(?P<image>[^/]+)$"
)
# The tail that identifies an image, wherever a tool put the tree ("/data/x/MURA-v1.1/train/...").
_TAIL_RE = re.compile(
    r"(?:^|/)((?:train|valid)/XR_[A-Z]+/patient\d+/study\d+_(?:positive|negative)/[^/]+)$"
)


@dataclass(frozen=True)
class MuraImage:
    """One image of the release with the metadata MURA encodes in its path."""

    file_name: str  # canonical "MURA-v1.1/<split>/..." path, relative to the dataset folder
    split: str  # official split: train | valid
    body_part: str  # XR_WRIST, ...
    patient_id: int
    study_id: str  # "<split>/<part>/patientNNNNN/studyK_<label>", unique in the release
    study_label: int  # 0 normal, 1 abnormal (from *_labeled_studies.csv)
    row: int = 0  # row in <split>_image_paths.csv, for messages


def canonical_path(path: str) -> str:
    """Normalise a MURA image path as users write it to ``MURA-v1.1/<split>/...``."""
    p = path.strip().replace("\\", "/").lstrip("./")
    if p.startswith(("train/", "valid/")):
        p = "MURA-v1.1/" + p
    return p


def mura_file_name(path: str) -> str | None:
    """The canonical file name in a path as annotation tools export it, or None.

    Handles ``train/XR_WRIST/...`` (CVAT keeps the uploaded tree), absolute or prefixed paths,
    URL-encoded ones (Label Studio local storage: ``/data/local-files/?d=MURA-v1.1%2Ftrain...``)
    and backslashes.
    """
    m = _TAIL_RE.search(unquote(str(path)).strip().replace("\\", "/"))
    return f"MURA-v1.1/{m[1]}" if m else None


def _read_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataError(
            path,
            "missing; the MURA-v1.1 release ships train/valid "
            "_image_paths.csv and _labeled_studies.csv beside train/ and valid/",
        )
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [row for row in csv.reader(f)]


def read_study_labels(mura_root: Path, split: str) -> dict[str, int]:
    """Map study path (``MURA-v1.1/.../studyK_x/``) to its 0/1 label from the release CSV."""
    path = mura_root / f"{split}_labeled_studies.csv"
    labels = {}
    for i, row in enumerate(_read_rows(path), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2 or row[1].strip() not in ("0", "1"):
            raise DataError(path, f"expected '<study path>/,<0|1>', got {','.join(row)!r}", i)
        labels[canonical_path(row[0]).rstrip("/") + "/"] = int(row[1])
    return labels


def read_mura_split(mura_root: str | Path, split: str) -> list[MuraImage]:
    """Read one official split (``train`` or ``valid``) in CSV order.

    Raises:
        DataError: missing root or CSV, a row that is not a MURA image path, a study without
            a label, or a label that contradicts the study folder name.
    """
    mura_root = Path(mura_root)
    if not mura_root.is_dir():
        raise DataError(
            mura_root,
            "MURA root not found; pass the unpacked MURA-v1.1 folder "
            "with --mura-root (see datasets/README.md)",
        )
    labels = read_study_labels(mura_root, split)
    path = mura_root / f"{split}_image_paths.csv"
    images = []
    for i, row in enumerate(_read_rows(path), start=1):
        if not row or not "".join(row).strip():
            continue
        m = _IMAGE_RE.match(canonical_path(row[0]))
        if len(row) != 1 or m is None or m["split"] != split:
            raise DataError(path, f"not a MURA {split} image path: {','.join(row)!r}", i)
        study = f"MURA-v1.1/{split}/{m['part']}/patient{m['patient']}/{m['study']}/"
        if study not in labels:
            raise DataError(path, f"study {study} has no label in {split}_labeled_studies.csv", i)
        if labels[study] != (m["label"] == "positive"):
            raise DataError(
                path,
                f"label {labels[study]} in {split}_labeled_studies.csv "
                f"contradicts folder name {m['study']}",
                i,
            )
        images.append(
            MuraImage(
                file_name=f"MURA-v1.1/{split}/{m['part']}/patient{m['patient']}/{m['study']}/"
                f"{m['image']}",
                split=split,
                body_part=m["part"],
                patient_id=int(m["patient"]),
                study_id=study[len("MURA-v1.1/") :].rstrip("/"),
                study_label=labels[study],
                row=i,
            )
        )
    return images


def image_path(mura_root: str | Path, file_name: str) -> Path:
    """Where a canonical ``MURA-v1.1/...`` file name lies under a (possibly renamed) root."""
    return Path(mura_root) / file_name.split("/", 1)[1]
