"""prepare_mura inputs: merged CSV + COCO exports, labels, quirks, skips, table coverage."""

import csv
import json
import shutil
from collections import defaultdict
from urllib.parse import quote

import cv2
import pytest

from fracture_d2.data.convert_mura import prepare_mura
from fracture_d2.data.errors import DataError

SPLITS = ("train", "val", "test")


def _rows(synthetic_raw):
    return [r.split(",") for r in (synthetic_raw / "boxes.csv").read_text().splitlines()[1:]]


def _size(synthetic_raw, path):
    h, w = cv2.imread(str(synthetic_raw / path), cv2.IMREAD_UNCHANGED).shape[:2]
    return w, h


def _export(synthetic_raw, rows, file_name, cat_id=1, cat_name="fracture"):
    """A COCO export as CVAT / Label Studio write it."""
    images, anns, ids = [], [], {}
    for path, *xyxy in rows:
        if path not in ids:
            ids[path] = len(ids) + 1
            w, h = _size(synthetic_raw, path)
            images.append({"id": ids[path], "file_name": file_name(path), "width": w, "height": h})
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": ids[path],
                "category_id": cat_id,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "segmentation": [],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
            }
        )
    return {"images": images, "annotations": anns, "categories": [{"id": cat_id, "name": cat_name}]}


def _boxes_out(out, name="mura"):
    got = []
    for s in SPLITS:
        coco = json.loads((out / "annotations" / f"{name}_{s}.json").read_text())
        names = {im["id"]: im["file_name"] for im in coco["images"]}
        cats = {c["id"]: c["name"] for c in coco["categories"]}
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            got.append((names[a["image_id"]], x, y, x + w, y + h, cats[a["category_id"]]))
    return sorted(got)


def test_csv_quirks_and_coco_exports_are_merged(synthetic_raw, tmp_path):
    rows = _rows(synthetic_raw)
    third = len(rows) // 3
    a, b, c = rows[:third], rows[third : 2 * third], rows[2 * third :]
    # CSV quirks: BOM, no header, blank lines, Windows separators, "./" and split-only paths
    lines = []
    for i, (path, *xyxy) in enumerate(a):
        p = path.replace("/", "\\") if i % 3 == 0 else ("./" + path if i % 3 == 1 else path[10:])
        lines += [",".join([p, *xyxy]), ""]
    (tmp_path / "quirks.csv").write_text("\ufeff" + "\n".join(lines), encoding="utf-8")
    cvat = _export(synthetic_raw, b, lambda p: p.split("/", 1)[1])  # train/XR_.../image1.png
    ls_paths = lambda p: "/data/local-files/?d=" + quote(p, safe="")  # noqa: E731
    studio = _export(synthetic_raw, c + a[:2], ls_paths, cat_id=0)  # 2 boxes also in the CSV
    (tmp_path / "cvat.json").write_text(json.dumps(cvat))
    (tmp_path / "studio.json").write_text(json.dumps(studio))
    files = [tmp_path / n for n in ("quirks.csv", "cvat.json", "studio.json")]
    s = prepare_mura(synthetic_raw / "MURA-v1.1", files, tmp_path / "out")
    want = sorted((p, *(float(v) for v in xyxy), "fracture") for p, *xyxy in rows)
    assert _boxes_out(tmp_path / "out") == want
    assert s["read"]["boxes"] == len(rows) + 2 and s["skipped"] == {"box_duplicate": 2}


def test_label_column_multi_class_class_map_and_registration(synthetic_raw, tmp_path):
    rows = _rows(synthetic_raw)
    text = "image_path,x_min,y_min,x_max,y_max,label\n" + "".join(
        ",".join([*r, "displaced" if i % 2 else "fracture"]) + "\n" for i, r in enumerate(rows)
    )
    (tmp_path / "labels.csv").write_text(text)
    root = tmp_path / "d2"
    s = prepare_mura(synthetic_raw / "MURA-v1.1", [tmp_path / "labels.csv"], root / "mc", "mura_mc")
    assert s["classes"] == ["fracture", "displaced"]
    labels = [g[-1] for g in _boxes_out(root / "mc", "mura_mc")]
    assert labels.count("displaced") == len(rows) // 2
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from fracture_d2.data.register import register_all

    register_all(root)
    assert MetadataCatalog.get("mura_mc_train").thing_classes == ["fracture", "displaced"]
    assert len(DatasetCatalog.get("mura_mc_train")) > 0  # load agrees with the metadata
    merged = prepare_mura(
        synthetic_raw / "MURA-v1.1",
        [tmp_path / "labels.csv"],
        tmp_path / "merged",
        class_map="fracture,displaced=fracture",
    )
    assert merged["classes"] == ["fracture"] and merged["skipped"] == {}
    with pytest.raises(DataError, match="not in the data"):
        prepare_mura(
            synthetic_raw / "MURA-v1.1",
            [tmp_path / "labels.csv"],
            tmp_path / "x",
            class_map="Fracture",
        )


def test_export_with_other_image_size_is_refused(synthetic_raw, tmp_path):
    export = _export(synthetic_raw, _rows(synthetic_raw)[:3], lambda p: p)
    export["images"][0]["width"] += 10
    (tmp_path / "e.json").write_text(json.dumps(export))
    with pytest.raises(DataError) as err:
        prepare_mura(synthetic_raw / "MURA-v1.1", [tmp_path / "e.json"], tmp_path / "out")
    assert "e.json:annotation id 1: " in str(err.value) and "boxes would be misplaced" in str(
        err.value
    )


def _copy(synthetic_raw, tmp_path):
    shutil.copytree(synthetic_raw / "MURA-v1.1", tmp_path / "MURA-v1.1")
    shutil.copy(synthetic_raw / "boxes.csv", tmp_path / "boxes.csv")
    return tmp_path / "MURA-v1.1", tmp_path / "boxes.csv"


def test_skip_invalid_counts_and_keeps_readable_images_listed(synthetic_raw, tmp_path):
    root, boxes = _copy(synthetic_raw, tmp_path)
    rows = _rows(synthetic_raw)
    gone, nan_image = rows[0][0], next(r[0] for r in rows if r[0] != rows[0][0])
    (root / gone.split("/", 1)[1]).unlink()
    with open(boxes, "a") as f:
        f.write(f"{nan_image},nan,1,5,5\n")
    negative = next(
        ln for ln in (root / "train_image_paths.csv").read_text().split() if "negative" in ln
    )
    with open(boxes, "a") as f:
        f.write(f"{negative},1,1,5,5\n")
    with pytest.raises(DataError, match="box on an image of a negative study"):
        prepare_mura(root, [boxes], tmp_path / "strict")
    with pytest.raises(DataError, match=r"train_image_paths.csv:\d+: image file not found"):
        prepare_mura(root, [synthetic_raw / "boxes.csv"], tmp_path / "strict")
    s = prepare_mura(root, [boxes], tmp_path / "out", skip_invalid=True)
    n_gone = sum(r[0] == gone for r in rows)
    n_nan = sum(r[0] == nan_image for r in rows)
    assert s["skipped"] == {
        "image_missing": 1,
        "box_of_skipped_image": n_gone + n_nan,
        "box_non_finite": 1,
        "box_on_negative_study": 1,
        "image_has_invalid_box": 2,
    }
    assert s["first_error"]["box_non_finite"].startswith(str(boxes))
    table = {
        r["file_name"]: r
        for r in csv.DictReader(open(tmp_path / "out" / "annotations" / "mura_images.csv"))
    }
    assert gone not in table  # unreadable: in no output, counted
    for name in (nan_image, negative):
        assert table[name]["annotated"] == "False" and table[name]["in_detection"] == "False"
    detected = {g[0] for g in _boxes_out(tmp_path / "out")}
    assert nan_image not in detected


def test_image_table_covers_every_image_and_matches_the_jsons(synthetic_raw, tmp_path):
    rows = _rows(synthetic_raw)
    keep = rows[::2]  # a partial annotation effort: some positive images without boxes
    (tmp_path / "half.csv").write_text("".join(",".join(r) + "\n" for r in keep))
    out = tmp_path / "out"
    s = prepare_mura(synthetic_raw / "MURA-v1.1", [tmp_path / "half.csv"], out)
    table = list(csv.DictReader(open(out / "annotations" / "mura_images.csv")))
    release = [
        ln
        for sp in ("train", "valid")
        for ln in (synthetic_raw / "MURA-v1.1" / f"{sp}_image_paths.csv").read_text().split()
    ]
    assert sorted(r["file_name"] for r in table) == sorted(release)
    in_json, n_boxes = {}, defaultdict(int)
    for sp in SPLITS:
        coco = json.loads((out / "annotations" / f"mura_{sp}.json").read_text())
        for im in coco["images"]:
            in_json[im["file_name"]] = sp
        for a in coco["annotations"]:
            n_boxes[a["image_id"]] += 1
    for r in table:
        assert (r["in_detection"] == "True") == (r["file_name"] in in_json)
        if r["file_name"] in in_json:
            assert in_json[r["file_name"]] == r["split"]
        assert int(r["n_boxes"]) == n_boxes[int(r["image_id"])]
    unannotated = sum(r["in_detection"] == "False" for r in table)
    assert unannotated == s["skipped"]["positive_without_boxes"] > 0
    for sp in ("val", "test"):  # the _all sets hold every image of their split
        coco = json.loads((out / "annotations" / f"mura_{sp}_all.json").read_text())
        assert sorted(im["file_name"] for im in coco["images"]) == sorted(
            r["file_name"] for r in table if r["split"] == sp
        )


def test_patient_under_two_body_parts_stays_in_one_split(synthetic_raw, tmp_path):
    root, boxes = _copy(synthetic_raw, tmp_path)
    lines = (root / "train_image_paths.csv").read_text().split()
    study = lines[0].rsplit("/", 1)[0]  # MURA-v1.1/train/XR_X/patientN/studyK_label
    part, patient = study.split("/")[2], study.split("/")[3]
    other = "XR_HUMERUS" if part != "XR_HUMERUS" else "XR_HAND"
    new = f"MURA-v1.1/train/{other}/{patient}/study1_negative"
    shutil.copytree(root / study.split("/", 1)[1], root / new.split("/", 1)[1])
    imgs = sorted(p.name for p in (root / new.split("/", 1)[1]).iterdir())
    with open(root / "train_image_paths.csv", "a") as f:
        f.writelines(f"{new}/{n}\n" for n in imgs)
    with open(root / "train_labeled_studies.csv", "a") as f:
        f.write(f"{new}/,0\n")
    pid = int(patient[len("patient") :])
    for seed in range(6):
        prepare_mura(root, [boxes], tmp_path / "out", val_fraction=0.5, seed=seed)
        table = list(csv.DictReader(open(tmp_path / "out" / "annotations" / "mura_images.csv")))
        mine = [r for r in table if int(r["patient_id"]) == pid]
        assert {r["body_part"] for r in mine} == {part, other}
        assert len({r["split"] for r in mine}) == 1, seed
