"""The synthetic generator writes exactly MURA-v1.1's layout, deterministically."""

import csv
import hashlib
import re
from collections import defaultdict

import cv2
import numpy as np
import pytest

from fracture_d2.data.synth_mura import generate_synthetic_mura
from fracture_d2.data.synth_radiograph import BODY_PARTS, render_radiograph

PATH_RE = re.compile(
    r"^MURA-v1\.1/(train|valid)/XR_(ELBOW|FINGER|FOREARM|HAND|HUMERUS|SHOULDER|WRIST)/"
    r"patient\d{5}/study(\d+)_(positive|negative)/image(\d+)\.png$"
)


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_and_csvs(synthetic_raw):
    root = synthetic_raw / "MURA-v1.1"
    assert sorted(p.name for p in root.iterdir()) == [
        "train",
        "train_image_paths.csv",
        "train_labeled_studies.csv",
        "valid",
        "valid_image_paths.csv",
        "valid_labeled_studies.csv",
    ]
    studies = defaultdict(list)
    for split in ("train", "valid"):
        lines = (root / f"{split}_image_paths.csv").read_text().splitlines()
        assert lines and all("," not in line for line in lines)  # one column, no header
        for line in lines:
            m = PATH_RE.match(line)
            assert m and m[1] == split, line
            assert (synthetic_raw / line).is_file()
            studies[line.rsplit("/", 1)[0] + "/"].append(line)
        on_disk = sorted(str(p.relative_to(synthetic_raw)) for p in (root / split).rglob("*.png"))
        assert on_disk == sorted(lines)
        labels = list(csv.reader(open(root / f"{split}_labeled_studies.csv")))
        for study, label in labels:
            assert study.endswith("/") and label in ("0", "1")
            assert (label == "1") == ("_positive/" in study)
            assert study in studies
        assert len(labels) == len({s for s in studies if f"/{split}/" in s})
    assert all(1 <= len(v) <= 5 for v in studies.values())
    per_patient = defaultdict(set)
    for s in studies:
        per_patient[s.rstrip("/").rsplit("/", 1)[0]].add(s)
    assert all(1 <= len(v) <= 3 for v in per_patient.values())


def test_images_are_grayscale_varied_and_boxed(synthetic_raw):
    rows = list(csv.reader(open(synthetic_raw / "boxes.csv")))
    assert rows[0] == ["image_path", "x_min", "y_min", "x_max", "y_max"]
    boxes = defaultdict(list)
    for path, *xyxy in rows[1:]:
        boxes[path].append([int(v) for v in xyxy])
    sizes = set()
    for line in (synthetic_raw / "MURA-v1.1" / "train_image_paths.csv").read_text().split():
        img = cv2.imread(str(synthetic_raw / line), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 2 and img.dtype == np.uint8 and max(img.shape) <= 128
        sizes.add(img.shape)
        assert bool(boxes.get(line)) == ("_positive/" in line)  # every positive image is boxed
        for x0, y0, x1, y1 in boxes.get(line, []):
            assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
    assert len(sizes) > 3


@pytest.mark.parametrize("part", BODY_PARTS)
def test_fracture_is_a_dark_break_inside_its_box(part):
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    broken, boxes = render_radiograph(part, (320, 400), 1, rng_a)
    assert len(boxes) == 1
    x0, y0, x1, y1 = (int(v) for v in boxes[0])
    assert 8 <= x1 - x0 <= 200 and 8 <= y1 - y0 <= 200
    # The same seed without the fracture step differs from the broken image inside the box.
    intact, _ = render_radiograph(part, (320, 400), 0, rng_b)
    inside = broken[y0:y1, x0:x1].astype(int) - intact[y0:y1, x0:x1]
    assert (inside < -40).sum() >= 10  # a visible dark gap where bone was


def test_deterministic_for_a_seed(tmp_path):
    kw = dict(patients=5, max_side=96, workers=1)
    generate_synthetic_mura(tmp_path / "a", seed=3, **kw)
    generate_synthetic_mura(tmp_path / "b", seed=3, **kw)
    generate_synthetic_mura(tmp_path / "c", seed=4, **kw)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_refuses_to_overwrite(tmp_path):
    generate_synthetic_mura(tmp_path, patients=2, max_side=64, workers=1)
    with pytest.raises(FileExistsError):
        generate_synthetic_mura(tmp_path, patients=2, max_side=64, workers=1)
