"""MURA tree + boxes -> COCO: boxes round-trip, patient-disjoint splits, clear errors."""

import csv
import json
import shutil
from collections import defaultdict

import pytest

from fracture_d2.data.convert_mura import prepare_mura
from fracture_d2.data.errors import DataError

from conftest import run_script

SPLITS = ("train", "val", "test")


def _load(root, name="mura_synthetic"):
    return {
        s: json.load(open(root / "mura_synthetic" / "annotations" / f"{name}_{s}.json"))
        for s in SPLITS
    }


def test_boxes_in_equal_boxes_out(synthetic_raw, datasets_root):
    rows = list(csv.DictReader(open(synthetic_raw / "boxes.csv")))
    expected = sorted(
        (r["image_path"], *(float(r[k]) for k in ("x_min", "y_min", "x_max", "y_max")))
        for r in rows
    )
    got = []
    for coco in _load(datasets_root).values():
        names = {im["id"]: im["file_name"] for im in coco["images"]}
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            got.append((names[a["image_id"]], x, y, x + w, y + h))
            assert a["category_id"] == 1 and a["area"] == pytest.approx(w * h)
    assert sorted(got) == expected


def test_splits_are_patient_disjoint_and_official_valid_is_test(datasets_root):
    cocos = _load(datasets_root)
    patients = {s: {im["patient_id"] for im in c["images"]} for s, c in cocos.items()}
    assert patients["train"] and patients["val"] and patients["test"]
    assert not patients["train"] & patients["val"]
    assert not (patients["train"] | patients["val"]) & patients["test"]
    assert all(im["file_name"].startswith("MURA-v1.1/valid/") for im in cocos["test"]["images"])
    assert all(
        im["file_name"].startswith("MURA-v1.1/train/")
        for s in ("train", "val")
        for im in cocos[s]["images"]
    )
    ids = [im["id"] for c in cocos.values() for im in c["images"]]
    assert len(ids) == len(set(ids))


def test_metadata_negatives_and_image_table(synthetic_raw, datasets_root):
    cocos = _load(datasets_root)
    n_boxes = defaultdict(int)
    for c in cocos.values():
        for a in c["annotations"]:
            n_boxes[a["image_id"]] += 1
        for im in c["images"]:
            assert {
                "body_part",
                "patient_id",
                "study_id",
                "study_label",
                "image_label",
                "annotated",
            } <= set(im)
            assert im["width"] <= 128 and im["height"] <= 128
            if im["study_label"] == 0:
                assert n_boxes[im["id"]] == 0 and im["image_label"] == 0
    table = list(
        csv.DictReader(
            open(datasets_root / "mura_synthetic" / "annotations" / "mura_synthetic_images.csv")
        )
    )
    release = sum(
        len((synthetic_raw / "MURA-v1.1" / f"{s}_image_paths.csv").read_text().split())
        for s in ("train", "valid")
    )
    assert len(table) == release  # every image of the release, detection or not
    per_test = {
        p: json.load(
            open(datasets_root / "mura_synthetic" / "annotations" / f"mura_synthetic_test_{p}.json")
        )["images"]
        for p in ("XR_WRIST", "XR_HAND", "XR_SHOULDER")
    }
    for part, images in per_test.items():
        assert all(im["body_part"] == part for im in images)
    summary = json.load(open(datasets_root / "mura_synthetic" / "prepare_summary.json"))
    assert summary["read"]["images"] == release


def test_rerun_is_byte_identical(synthetic_raw, tmp_path):
    outs = []
    for name in ("a", "b"):
        prepare_mura(synthetic_raw / "MURA-v1.1", [synthetic_raw / "boxes.csv"], tmp_path / name)
        outs.append({p.name: p.read_bytes() for p in (tmp_path / name / "annotations").iterdir()})
    assert outs[0] == outs[1] and "mura_train.json" in outs[0]


def test_unannotated_positives_left_out_and_counted(synthetic_raw, tmp_path):
    rows = (synthetic_raw / "boxes.csv").read_text().splitlines()
    dropped = rows[1].split(",")[0]
    keep = [r for r in rows if not r.startswith(dropped + ",")]
    (tmp_path / "partial.csv").write_text("\n".join(keep) + "\n")
    summary = prepare_mura(
        synthetic_raw / "MURA-v1.1", [tmp_path / "partial.csv"], tmp_path / "out"
    )
    assert summary["skipped"] == {"positive_without_boxes": 1}
    names = [
        im["file_name"]
        for s in SPLITS
        for im in json.load(open(tmp_path / "out" / "annotations" / f"mura_{s}.json"))["images"]
    ]
    assert dropped not in names


def _copy_tree(synthetic_raw, tmp_path):
    shutil.copytree(synthetic_raw / "MURA-v1.1", tmp_path / "MURA-v1.1")
    return tmp_path / "MURA-v1.1"


@pytest.mark.parametrize(
    "case", ["missing_root", "missing_csv", "unknown_image", "bad_number", "label_contradiction"]
)
def test_bad_input_names_file_and_row_and_writes_nothing(case, synthetic_raw, tmp_path):
    root, boxes = _copy_tree(synthetic_raw, tmp_path), tmp_path / "boxes.csv"
    shutil.copy(synthetic_raw / "boxes.csv", boxes)
    expect = None
    if case == "missing_root":
        root, expect = tmp_path / "nope" / "MURA-v1.1", "MURA root not found"
    elif case == "missing_csv":
        (root / "valid_labeled_studies.csv").unlink()
        expect = "valid_labeled_studies.csv: missing"
    elif case == "unknown_image":
        with open(boxes, "a") as f:
            f.write("MURA-v1.1/train/XR_HAND/patient99999/study1_positive/image1.png,1,1,5,5\n")
        n = len(boxes.read_text().splitlines())
        expect = f"boxes.csv:{n}: box names an image not in the MURA CSVs"
    elif case == "bad_number":
        lines = boxes.read_text().splitlines()
        lines[2] = ",".join(lines[2].split(",")[:4] + ["abc"])
        boxes.write_text("\n".join(lines) + "\n")
        expect = "boxes.csv:3: non-numeric coordinate"
    elif case == "label_contradiction":
        csv_path = root / "train_labeled_studies.csv"
        lines = csv_path.read_text().splitlines()
        i = next(i for i, ln in enumerate(lines) if ln.endswith(",0"))
        lines[i] = lines[i][:-1] + "1"
        csv_path.write_text("\n".join(lines) + "\n")
        expect = "contradicts folder name"
    out = tmp_path / "out"
    proc = run_script(
        "datasets/prepare_mura.py", "--mura-root", root, "--boxes", boxes, "--out", out, check=False
    )
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and expect in err, err
    assert not (out / "annotations").exists() and not (out / "prepare_summary.json").exists()


def test_failed_rerun_keeps_previous_output(synthetic_raw, tmp_path):
    out = tmp_path / "out"
    prepare_mura(synthetic_raw / "MURA-v1.1", [synthetic_raw / "boxes.csv"], out)
    before = (out / "annotations" / "mura_train.json").read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("MURA-v1.1/train/XR_HAND/patient99999/study1_positive/image1.png,1,1,5,5\n")
    with pytest.raises(DataError, match="bad.csv:1"):
        prepare_mura(synthetic_raw / "MURA-v1.1", [bad], out)
    assert (out / "annotations" / "mura_train.json").read_bytes() == before
