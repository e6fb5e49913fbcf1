"""FracAtlas importer on a synthetic tree in the release's layout, quirks included."""

import csv
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fracture_d2.data.convert_fracatlas import prepare_fracatlas
from fracture_d2.data.errors import DataError
from fracture_d2.data.synth_radiograph import render_radiograph

from conftest import REPO, run_script

FIELDS = "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count"
FIELDS += ",frontal,lateral,oblique"


def write_fracatlas(root, splits=(("train", 6), ("valid", 2)), negatives=8, seed=0):
    """A FracAtlas-layout tree: returns {fractured name: [xywh boxes as written]}."""
    rng = np.random.default_rng(seed)
    for sub in ("images/Fractured", "images/Non_fractured", "Annotations/COCO JSON"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "Utilities" / "Fracture Split").mkdir(parents=True, exist_ok=True)
    coco = {
        "info": {},
        "images": [],
        "annotations": [],
        "categories": [{"id": 0, "name": "fractured"}],
    }
    rows, boxes, n = [], {}, 0
    for split, count in splits:
        listed = []
        for _ in range(count):
            n += 1
            name, (w, h) = f"IMG{n:07d}.jpg", (40 + 4 * (n % 5), 64)
            gray, xyxy = render_radiograph("FOREARM", (w, h), 1, rng)
            img = gray if n % 2 else cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)  # 1 or 3 channels
            cv2.imwrite(str(root / "images" / "Fractured" / name), img)
            coco["images"].append({"id": n, "width": w, "height": h, "file_name": name})
            boxes[name] = []
            for x0, y0, x1, y1 in xyxy:
                if n == 1:  # overshoots by half a pixel: clipped
                    x1 = w + 0.5
                box = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
                boxes[name].append(box)
                coco["annotations"].append(
                    {
                        "id": len(coco["annotations"]),  # FracAtlas counts from 0
                        "iscrowd": 0,
                        "image_id": n,
                        "category_id": 0,
                        "bbox": box,
                        "area": box[2] * box[3],
                        "segmentation": [[x0, y0, x1, y0, x1, y1]],
                    }
                )
            fractured = 0 if n == 2 else 1  # the release has one such contradiction
            rows.append(f"{name},0,1,0,0,0,0,0,{fractured},1,1,0,0")
            listed.append(name)
        text = "image_id\n" + "".join(f"{x}\n" for x in listed)
        (root / "Utilities" / "Fracture Split" / f"{split}.csv").write_text(text)
    for k in range(negatives):
        n += 1
        name = f"IMG{n:07d}.jpg"
        gray, _ = render_radiograph("HAND", (48, 56), 0, rng)
        cv2.imwrite(str(root / "images" / "Non_fractured" / name), gray)
        flags = "1,0,0,1,1" if k == 0 else "1,0,0,0,0"  # hand+shoulder: mixed
        rows.append(f"{name},{flags},0,0,0,0,0,1,0")
    truncated = root / "images" / "Non_fractured" / f"IMG{n:07d}.jpg"
    truncated.write_bytes(
        truncated.read_bytes()[:-6]
    )  # ends a few bytes short, like 14 in the release
    (root / "dataset.csv").write_text(FIELDS + "\n" + "\n".join(rows) + "\n")
    (root / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json").write_text(json.dumps(coco))
    return boxes


@pytest.fixture(scope="module")
def fracatlas(tmp_path_factory):
    root = tmp_path_factory.mktemp("fa") / "FracAtlas"
    return root, write_fracatlas(root)


def _load(out, split):
    return json.loads((out / "annotations" / f"fracatlas_{split}.json").read_text())


def test_splits_category_boxes_negatives_and_quirks(fracatlas, tmp_path):
    root, boxes = fracatlas
    out = tmp_path / "fracatlas"
    summary = prepare_fracatlas(root, out)
    # no test.csv in the release folder -> no test split
    assert sorted(p.name for p in (out / "annotations").iterdir()) == [
        "fracatlas_images.csv",
        "fracatlas_train.json",
        "fracatlas_val.json",
    ]
    train, val = _load(out, "train"), _load(out, "val")
    assert train["categories"] == [{"id": 1, "name": "fracture", "supercategory": "bone"}]
    got = {}
    for c in (train, val):
        names = {im["id"]: im["file_name"].rsplit("/", 1)[1] for im in c["images"]}
        for a in c["annotations"]:
            assert a["category_id"] == 1
            got.setdefault(names[a["image_id"]], []).append(a["bbox"])
        for im in c["images"]:
            assert (out / im["file_name"]).is_file() and im["file_name"].startswith("FracAtlas/")
            assert im["body_part"] in ("hand", "leg", "mixed")
    assert set(got) == set(boxes)
    for name, bs in boxes.items():
        want = [[round(v, 2) for v in b] for b in bs]
        if name == "IMG0000001.jpg":  # clipped to the image
            want[0][2] = round(40 + 4 - bs[0][0], 2)
        assert got[name] == want, name
    negs = {
        s: [im for im in c["images"] if im["image_label"] == 0]
        for s, c in (("train", train), ("val", val))
    }
    assert (len(negs["train"]), len(negs["val"])) == (6, 2)  # 8 negatives, ratio 6:2
    assert all(im["annotated"] for n in negs.values() for im in n)
    assert summary["skipped"] == {}
    assert summary["warnings"] == {
        "box_clipped": 1,
        "image_truncated_decodable": 1,
        "label_conflict": 1,
    }
    table = list(csv.DictReader(open(out / "annotations" / "fracatlas_images.csv")))
    assert len(table) == 16 and {r["split"] for r in table} == {"train", "val"}


def test_rerun_identical_and_test_split_when_present(fracatlas, tmp_path):
    root, _ = fracatlas
    outs = []
    for k in range(2):
        prepare_fracatlas(root, tmp_path / f"o{k}")
        outs.append(
            {p.name: p.read_bytes() for p in (tmp_path / f"o{k}" / "annotations").iterdir()}
        )
    assert outs[0] == outs[1]
    root3 = tmp_path / "three" / "FracAtlas"
    write_fracatlas(root3, (("train", 6), ("valid", 2), ("test", 2)), negatives=10, seed=1)
    s = prepare_fracatlas(root3, tmp_path / "three_out")
    assert s["source"]["negatives_per_split"] == {"train": 6, "val": 2, "test": 2}
    assert s["written"]["fracatlas_test"] == {"images": 4, "boxes": 2}


def test_undecodable_image_stops_or_is_counted(fracatlas, tmp_path):
    root = tmp_path / "FracAtlas"
    shutil.copytree(fracatlas[0], root)
    (root / "images" / "Non_fractured" / "IMG0000010.jpg").write_text("not a jpeg")
    out = tmp_path / "out"
    proc = run_script("datasets/prepare_fracatlas.py", "--root", root, "--out", out, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "dataset.csv:11:" in proc.stderr and "IMG0000010.jpg" in proc.stderr
    assert not out.exists() or not (out / "annotations").exists()
    proc = run_script(
        "datasets/prepare_fracatlas.py", "--root", root, "--out", out, "--skip-invalid"
    )
    assert "skipped image_unreadable" in proc.stdout
    summary = json.loads((out / "prepare_summary.json").read_text())
    assert summary["skipped"] == {"image_unreadable": 1}
    assert sum(w["images"] for w in summary["written"].values()) == 15


def test_registered_by_register_all_with_light_imports(fracatlas, tmp_path):
    """Converters never load torch; register_all() registers the prepared datasets."""
    prepare_fracatlas(fracatlas[0], tmp_path / "fracatlas")
    code = (
        "import sys\n"
        "import fracture_d2.data.convert_fracatlas, fracture_d2.data.convert_mura\n"
        "assert 'torch' not in sys.modules and 'detectron2' not in sys.modules\n"
        "from detectron2.data import DatasetCatalog, MetadataCatalog\n"
        "from fracture_d2.data import register_all\n"
        "register_all()\n"
        "d = DatasetCatalog.get('fracatlas_train')\n"
        "print(len(d), MetadataCatalog.get('fracatlas_train').thing_classes)\n"
        "try:\n    DatasetCatalog.get('fracatlas_test')\n"
        "except FileNotFoundError as e:\n    print('test:', e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO), "DETECTRON2_DATASETS": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "12 ['fracture']" in proc.stdout
    assert "prepare_fracatlas.py" in proc.stdout


def test_split_file_naming_unknown_or_twice_listed_image(fracatlas, tmp_path):
    root = tmp_path / "FracAtlas"
    shutil.copytree(fracatlas[0], root)
    valid = root / "Utilities" / "Fracture Split" / "valid.csv"
    valid.write_text(valid.read_text() + "IMG9999999.jpg\nIMG0000001.jpg\n")
    with pytest.raises(DataError, match=r"valid.csv:4: IMG9999999.jpg has no entry in"):
        prepare_fracatlas(root, tmp_path / "out")
    s = prepare_fracatlas(root, tmp_path / "out", skip_invalid=True)
    assert s["skipped"] == {"image_in_two_splits": 1, "image_not_in_annotations": 1}


def test_box_fraction_and_mixed_training_on_fracatlas(fracatlas, tmp_path):
    """The image-label switches on FracAtlas-style data (fractured / normal labels, boxes on
    the fractured): a seeded box fraction of fracatlas_train, and the mixed model training on
    its boxed, label-only and normal images."""
    prepare_fracatlas(fracatlas[0], tmp_path / "fracatlas")
    env = {"DETECTRON2_DATASETS": str(tmp_path)}
    run_script(
        "datasets/make_box_fraction.py",
        *("--dataset", "fracatlas_train", "--fraction", 0.5, "--seed", 0),
        env=env,
    )
    kept = json.loads(
        (tmp_path / "fracatlas/annotations/fracatlas_train_box50_s0.json").read_text()
    )
    label_only = [im for im in kept["images"] if not im["annotated"]]
    assert len(label_only) == 3 and all(im["image_label"] == 1 for im in label_only)
    out = tmp_path / "run"
    run_script(
        "tools/train_net.py",
        *("--config-file", "configs/quick_schedules/faster_rcnn_R_18_FPN_mixed_smoke.yaml"),
        *("DATASETS.TRAIN", "('fracatlas_train_box50_s0',)", "DATASETS.TEST", "('fracatlas_val',)"),
        *("SOLVER.MAX_ITER", 2, "FRACTURE.EVAL.BOOTSTRAP", 0, "OUTPUT_DIR", out),
        env=env,
    )
    log = (out / "log.txt").read_text()
    assert "3 boxed positive, 3 image-label-only positive, 6 negative" in log
    assert "image-label-only positives are 0.25 of each batch" in log
    assert (out / "inference" / "fracatlas_val" / "image_head_scores.json").is_file()
