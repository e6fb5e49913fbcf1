"""YOLO importer on synthetic Ultralytics, Roboflow and flat layouts; class mapping; errors."""

import json

import cv2
import numpy as np
import pytest
import yaml

from fracture_d2.data.convert_yolo import prepare_yolo
from fracture_d2.data.errors import DataError
from fracture_d2.data.synth_radiograph import render_radiograph

from conftest import run_script

NAMES = {0: "boneanomaly", 1: "fracture", 2: "text"}


def _write(image_dir, label_dir, stem, rng, extra=(), sixteen=False, label=True):
    """One radiograph + its YOLO label file; returns the fracture boxes in pixels."""
    w, h = int(rng.integers(48, 72)), int(rng.integers(48, 72))
    gray, boxes = render_radiograph("WRIST", (w, h), 1, rng)
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(image_dir / f"{stem}.png"), gray.astype(np.uint16) * 257 if sixteen else gray)
    lines = []
    for x0, y0, x1, y1 in boxes:
        cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
        lines.append(f"1 {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    lines += list(extra)
    if label:
        (label_dir / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return [tuple(float(v) for v in b) for b in boxes]


def ultralytics(root, rng):
    boxes = {}
    for split, n in (("train", 4), ("val", 2)):
        for k in range(n):
            stem = f"{split}{k}"
            extra = ["2 0.1 0.1 0.1 0.05"] if k == 0 else []  # a "text" box (train0, val0)
            if k == 1:
                extra.append("0 0.5 0.5 0.6 0.5 0.6 0.6 0.5 0.6")  # boneanomaly polygon
            boxes[f"images/{split}/{stem}.png"] = _write(
                root / "images" / split, root / "labels" / split, stem, rng, extra, k == 2
            )
    gray, _ = render_radiograph("HAND", (40, 50), 0, rng)
    cv2.imwrite(str(root / "images" / "train" / "neg0.png"), gray)  # no label file: a negative
    cv2.imwrite(str(root / "images" / "train" / "neg1.png"), gray)
    (root / "labels" / "train" / "neg1.txt").write_text("")  # empty label file: a negative too
    cfg = {"path": ".", "train": "images/train", "val": "images/val", "names": NAMES}
    (root / "data.yaml").write_text(yaml.safe_dump(cfg))
    return boxes


def _boxes(out, name, split):
    coco = json.loads((out / "annotations" / f"{name}_{split}.json").read_text())
    names = {im["id"]: im["file_name"] for im in coco["images"]}
    got = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        got.setdefault(names[a["image_id"]], []).append((a["category_id"], (x, y, x + w, y + h)))
    return coco, got


def test_ultralytics_layout_keep_only_fracture(tmp_path):
    root = tmp_path / "wrist"
    truth = ultralytics(root, np.random.default_rng(0))
    out = tmp_path / "out"
    s = prepare_yolo(root, out, "wrist", class_map="fracture")
    assert list(s["written"]) == ["wrist_train", "wrist_val"]
    assert s["classes"] == ["fracture"] and s["skipped"] == {"box_class_not_kept": 4}
    assert s["warnings"] == {"image_without_label_file": 1}
    for split in ("train", "val"):
        coco, got = _boxes(out, "wrist", split)
        assert coco["categories"][0]["name"] == "fracture"
        for file_name, boxes in got.items():
            want = truth[file_name.split("/", 1)[1]]
            assert [c for c, _ in boxes] == [1] * len(want)
            np.testing.assert_allclose([b for _, b in boxes], want, atol=0.02)
        for im in coco["images"]:
            assert (out / im["file_name"]).is_file()  # through the link out/wrist -> root
    train, _ = _boxes(out, "wrist", "train")
    assert sum(im["image_label"] == 0 for im in train["images"]) == 2  # both negatives kept


def test_merge_classes_and_polygon(tmp_path):
    root = tmp_path / "wrist"
    ultralytics(root, np.random.default_rng(0))
    s = prepare_yolo(root, tmp_path / "out", "w", class_map="fracture,boneanomaly=fracture")
    assert s["classes"] == ["fracture"] and s["skipped"] == {"box_class_not_kept": 2}
    _, got = _boxes(tmp_path / "out", "w", "train")
    poly = got["wrist/images/train/train1.png"][-1][1]  # the polygon's box, in pixels
    h, w = cv2.imread(str(root / "images/train/train1.png"), cv2.IMREAD_UNCHANGED).shape
    np.testing.assert_allclose(poly, (0.5 * w, 0.5 * h, 0.6 * w, 0.6 * h), atol=0.02)
    s = prepare_yolo(root, tmp_path / "all", "w")  # no map: every class, in the YAML's order
    assert s["classes"] == ["boneanomaly", "fracture", "text"] and s["skipped"] == {}


def test_roboflow_layout(tmp_path):
    root, rng = tmp_path / "rf", np.random.default_rng(1)
    for split, n in (("train", 3), ("valid", 2), ("test", 2)):
        for k in range(n):
            _write(root / split / "images", root / split / "labels", f"{split}{k}", rng)
    cfg = {"train": "../train/images", "val": "../valid/images", "test": "../test/images"}
    (root / "data.yaml").write_text(yaml.safe_dump({**cfg, "nc": 3, "names": list(NAMES.values())}))
    s = prepare_yolo(root, tmp_path / "out", "rf", class_map="fracture")
    assert {k: v["images"] for k, v in s["written"].items()} == {
        "rf_train": 3,
        "rf_val": 2,
        "rf_test": 2,
    }


def test_flat_folder_split_by_patient(tmp_path):
    root, rng = tmp_path / "flat", np.random.default_rng(2)
    for p in range(8):
        for k in range(3):
            _write(root / "images", root / "labels", f"p{p:02d}_{k}", rng)
    out = tmp_path / "out"
    run_script(
        "datasets/prepare_yolo.py",
        *("--root", root, "--out", out, "--name", "flat", "--names", "boneanomaly,fracture"),
        *("--val-fraction", 0.25, "--test-fraction", 0.25, "--group-regex", r"^(p\d+)_"),
    )
    groups = {}
    for split in ("train", "val", "test"):
        coco = json.loads((out / "annotations" / f"flat_{split}.json").read_text())
        assert coco["images"], split
        for im in coco["images"]:
            groups.setdefault(im["file_name"].split("/")[-1][:3], set()).add(split)
    assert len(groups) == 8 and all(len(s) == 1 for s in groups.values())


@pytest.mark.parametrize(
    "line, reason, text",
    [
        ("7 0.5 0.5 0.1 0.1", "box_unknown_category", "class 7 not in 0..2"),
        ("1 0.5 abc 0.1 0.1", "box_malformed", "not 'class cx cy w h'"),
        ("1 0.5 0.5 0.1", "box_malformed", "expected 5 values"),
        ("1 0.5 0.5 nan 0.1", "box_non_finite", "non-finite"),
        ("1 1.5 0.5 0.2 0.2", "box_outside_image", "outside"),
        ("1 0.5 0.5 0 0.1", "box_empty", "zero or negative"),
    ],
)
def test_bad_label_line(tmp_path, line, reason, text):
    root = tmp_path / "wrist"
    ultralytics(root, np.random.default_rng(0))
    label = root / "labels" / "val" / "val0.txt"
    label.write_text(label.read_text() + line + "\n")
    n_lines = len(label.read_text().splitlines())
    with pytest.raises(DataError) as err:
        prepare_yolo(root, tmp_path / "out", "w")
    assert f"val0.txt:{n_lines}: " in str(err.value) and text in str(err.value)
    s = prepare_yolo(root, tmp_path / "out", "w", skip_invalid=True)
    assert s["skipped"][reason] == 1 and s["skipped"]["image_has_invalid_box"] == 1
    assert s["written"]["w_val"]["images"] == 1


def test_orphan_label_file_and_missing_names(tmp_path):
    root = tmp_path / "wrist"
    ultralytics(root, np.random.default_rng(0))
    (root / "labels" / "train" / "ghost.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match="ghost.txt: no image for this label file"):
        prepare_yolo(root, tmp_path / "out", "w")
    s = prepare_yolo(root, tmp_path / "out", "w", skip_invalid=True)
    assert s["skipped"] == {"label_file_without_image": 1}
    (root / "data.yaml").unlink()
    with pytest.raises(DataError, match="class names needed"):
        prepare_yolo(root, tmp_path / "out", "w")
    with pytest.raises(DataError, match=r"classes \['fractur'\] are not in the data"):
        prepare_yolo(root, tmp_path / "out", "w", names=list(NAMES.values()), class_map="fractur")
