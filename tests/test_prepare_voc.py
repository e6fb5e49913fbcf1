"""Pascal VOC importer on a synthetic devkit tree and a LabelImg folder; errors."""

import json

import cv2
import numpy as np
import pytest

from fracture_d2.data.convert_voc import prepare_voc
from fracture_d2.data.errors import DataError
from fracture_d2.data.synth_radiograph import render_radiograph

from conftest import run_script


def _xml(filename, w, h, objects, size=True):
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for n, (x0, y0, x1, y1) in objects
    )
    size_tag = f"<size><width>{w}</width><height>{h}</height><depth>1</depth></size>"
    return (
        f"<annotation><filename>{filename}</filename>{size_tag if size else ''}{objs}</annotation>"
    )


def write_voc(root, rng, n=6, devkit=True):
    """VOC boxes are 1-based inclusive: returns stem -> expected 0-based xyxy boxes."""
    ann_dir, img_dir = (root / "Annotations", root / "JPEGImages") if devkit else (root, root)
    ann_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    truth = {}
    for k in range(n):
        stem, (w, h) = f"img{k:03d}", (int(rng.integers(48, 70)), int(rng.integers(48, 70)))
        gray, boxes = render_radiograph("ELBOW", (w, h), 1 if k % 3 else 0, rng)
        cv2.imwrite(str(img_dir / f"{stem}.jpg"), gray)
        objs = [
            ("Fracture", (int(x0) + 1, int(y0) + 1, int(x1), int(y1))) for x0, y0, x1, y1 in boxes
        ]
        if k == 1:
            objs.append(("hardware", (2, 2, 10, 10)))
        (ann_dir / f"{stem}.xml").write_text(_xml(f"{stem}.jpg", w, h, objs))
        truth[stem] = [
            (float(int(b[0])), float(int(b[1])), float(int(b[2])), float(int(b[3]))) for b in boxes
        ]
    if devkit:
        (root / "ImageSets" / "Main").mkdir(parents=True)
        (root / "ImageSets" / "Main" / "train.txt").write_text("img000\nimg001\nimg002\nimg003\n")
        (root / "ImageSets" / "Main" / "val.txt").write_text("img004\nimg005\n")
    return truth


def test_devkit_layout_one_based_boxes_and_class_map(tmp_path):
    root = tmp_path / "VOC"
    truth = write_voc(root, np.random.default_rng(0))
    out = tmp_path / "out"
    s = prepare_voc(root, out, "voc", class_map="Fracture=fracture")
    assert {k: v["images"] for k, v in s["written"].items()} == {"voc_train": 4, "voc_val": 2}
    assert s["skipped"] == {"box_class_not_kept": 1} and s["classes"] == ["fracture"]
    for split in ("train", "val"):
        coco = json.loads((out / "annotations" / f"voc_{split}.json").read_text())
        for im in coco["images"]:
            stem = im["file_name"].rsplit("/", 1)[1][:-4]
            got = [
                (
                    a["bbox"][0],
                    a["bbox"][1],
                    a["bbox"][0] + a["bbox"][2],
                    a["bbox"][1] + a["bbox"][3],
                )
                for a in coco["annotations"]
                if a["image_id"] == im["id"]
            ]
            assert got == truth[stem] and im["image_label"] == int(bool(truth[stem]))
            assert (out / im["file_name"]).is_file()
    s = prepare_voc(root, tmp_path / "both", "voc")  # no map: both classes, sorted
    assert s["classes"] == ["Fracture", "hardware"]


def test_labelimg_folder_split_by_fraction(tmp_path):
    root = tmp_path / "labelimg"
    write_voc(root, np.random.default_rng(1), n=10, devkit=False)
    out = tmp_path / "out"
    proc = run_script(
        "datasets/prepare_voc.py",
        *("--root", root, "--out", out, "--name", "li", "--class-map", "Fracture=fracture"),
        *("--val-fraction", 0.3),
    )
    assert "li_val" in proc.stdout
    s = json.loads((out / "prepare_summary.json").read_text())
    assert s["written"]["li_train"]["images"] + s["written"]["li_val"]["images"] == 10
    assert s["written"]["li_val"]["images"] >= 2


@pytest.mark.parametrize("case", ["size_mismatch", "bad_xml", "bad_number", "missing_image"])
def test_bad_input(tmp_path, case):
    root = tmp_path / "VOC"
    write_voc(root, np.random.default_rng(0))
    xml = root / "Annotations" / "img004.xml"
    if case == "size_mismatch":
        xml.write_text(xml.read_text().replace("<width>", "<width>1"))
        reason, text = "image_size_mismatch", "img004.xml: declared size 1"
    elif case == "bad_xml":
        xml.write_text("<annotation><object>")
        reason, text = "annotation_unreadable", "img004.xml: not a readable VOC XML"
    elif case == "bad_number":
        xml.write_text(_xml("img004.jpg", 50, 50, [("Fracture", ("a", 1, 5, 5))]))
        reason, text = "box_malformed", "img004.xml:object 1: object needs <name> and numeric"
    else:
        (root / "JPEGImages" / "img004.jpg").unlink()
        reason, text = "image_missing", "image file not found"
    with pytest.raises(DataError) as err:
        prepare_voc(root, tmp_path / "out", "voc")
    assert text in str(err.value) and "\n" not in str(err.value)
    s = prepare_voc(root, tmp_path / "out", "voc", skip_invalid=True)
    assert s["skipped"][reason] == 1 and s["written"]["voc_val"]["images"] == 1
