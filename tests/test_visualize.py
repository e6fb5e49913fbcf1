"""tools/visualize.py and its parts: TP/FP/missed selection, box drawing, Grad-CAM, curves,
index.html."""

import json
import re

import cv2
import numpy as np
import pytest
import torch
from eval_report import eval_metrics

from fracture_d2.inference import BatchPredictor, load_cfg
from fracture_d2.utils_io import read_training_metrics
from fracture_d2.visualization.gradcam import explain
from fracture_d2.visualization.overlay import COLORS, DrawBox, draw_boxes
from fracture_d2.visualization.panels import gt_boxes, pred_boxes
from fracture_d2.visualization.selection import ImageResult, select

from conftest import run_script

SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded, untrained smoke model (it predicts boxes with scores near 0.5)."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    out = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(load_cfg(SMOKE)), save_dir=str(out)).save("model")
    return out / "model.pth"


def _result(gt, boxes, scores, image_id=1):
    return ImageResult(
        image_id,
        "x.png",
        gt=np.array(gt, float).reshape(-1, 4),
        boxes=np.array(boxes, float).reshape(-1, 4),
        scores=np.array(scores, float),
    )


def test_status_and_selection_known_answer():
    hit = _result([[10, 10, 50, 50]], [[12, 10, 50, 52], [100, 100, 120, 120]], [0.9, 0.6], 1)
    miss = _result([[10, 10, 50, 50], [60, 60, 90, 90]], [[61, 59, 90, 90]], [0.4], 2)
    low = _result([[10, 10, 50, 50]], [[10, 10, 50, 50]], [0.3], 3)  # below the threshold
    neg = _result([], [[0, 0, 20, 20]], [0.95], 4)
    unboxed = _result([], [[0, 0, 20, 20]], [0.99], 5)
    unboxed.annotated = False  # a positive image without boxes (``*_test_all``): not judged
    for r in (hit, miss, low, neg, unboxed):
        r.match(threshold=0.35, iou=0.5)
    assert (unboxed.n_fp, unboxed.judged, len(unboxed.shown)) == (0, False, 1)
    assert (hit.n_tp, hit.n_fp, hit.n_missed, hit.max_fp_score) == (1, 1, 0, 0.6)
    assert (miss.n_tp, miss.n_fp, miss.n_missed) == (1, 0, 1)
    assert (low.n_tp, low.n_fp, low.n_missed) == (0, 0, 1)
    rs = [hit, miss, low, neg, unboxed]
    assert [r.image_id for r in select(rs, "worst-fp", 5)] == [4, 1]
    assert [r.image_id for r in select(rs, "missed", 5)] == [3, 2]  # lower image score first
    assert [r.image_id for r in select(rs, "tp", 5)] == [1, 2]
    assert len(select(rs, "sample", 3, seed=1)) == 3
    assert [b.kind for b in pred_boxes(unboxed)] == ["pred"]
    assert [b.kind for b in pred_boxes(hit)] == ["tp", "fp"]
    assert [b.kind for b in gt_boxes(miss)] == ["missed", "found"]


def test_boxes_are_drawn_where_they_are():
    gray = np.zeros((100, 120), np.uint8)
    rgb = draw_boxes(gray, [DrawBox((20, 30, 60, 70), "tp")], scale=2.0)
    assert rgb.shape == (200, 240, 3)
    want = np.array([int(COLORS["tp"][i : i + 2], 16) for i in (1, 3, 5)])
    edge = rgb[80:120, 38:43].reshape(-1, 3)  # the left edge at x = 20 * 2
    assert np.abs(edge - want).sum(axis=1).min() < 40
    assert rgb[100, 80:100].max() == 0 and rgb[10:40, 150:200].max() == 0  # inside / away


def test_gradcam_and_objectness_maps(synthetic_raw, weights):
    # float32 inference, as the explainer runs, so both see the very same detections
    opts = ["MODEL.WEIGHTS", str(weights), "FRACTURE.FAST.INFERENCE_DTYPE", "float32"]
    predictor = BatchPredictor(load_cfg(SMOKE, opts))
    png = sorted((synthetic_raw / "MURA-v1.1" / "valid").rglob("*.png"))[0]
    gray = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    expl = explain(predictor, gray)
    ref = predictor([gray])[0]
    np.testing.assert_allclose(expl.boxes, ref.pred_boxes.tensor.numpy(), atol=1e-3)
    assert (expl.layer, expl.method) == ("res3", "hirescam")
    for m in (expl.cam, expl.objectness):
        assert m.shape == gray.shape and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
    assert expl.cam.max() == pytest.approx(1.0) and expl.cam.std() > 0
    pooled = explain(predictor, gray, layer="pooled")
    assert re.fullmatch(r"p[2-5]", pooled.layer)  # the FPN level the box was pooled from
    # Element-wise on the pooled level: the map stays inside the proposal, so mostly near the box.
    x0, y0, x1, y1 = pooled.boxes[0].astype(int)
    margin = 16
    near = pooled.cam[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin]
    assert near.sum() > 0.9 * pooled.cam.sum()
    classic = explain(predictor, gray, layer="res4", method="gradcam")
    assert classic.cam.max() == pytest.approx(1.0)
    assert all(p.grad is None for p in predictor.model.parameters())  # no weight gradients
    with pytest.raises(ValueError, match="not among"):
        explain(predictor, gray, layer="p9")


def test_training_metrics_reader(tmp_path):
    path = tmp_path / "metrics.json"
    lines = [
        {"iteration": 9, "total_loss": 1.0},
        {"iteration": 19, "total_loss": 0.5},
        {"iteration": 19, "bbox/AP50": 40.0},
        {"iteration": 19, "total_loss": 0.4},
    ]
    path.write_text("\n".join(map(json.dumps, lines)) + '\n{"iteration": 29, "tot')
    recs = read_training_metrics(path)  # the unfinished last line of a running job is ignored
    assert recs == {
        9: {"iteration": 9, "total_loss": 1.0},
        19: {"iteration": 19, "total_loss": 0.4, "bbox/AP50": 40.0},
    }
    path.write_text('{"iteration": 1}\nbroken\n{"iteration": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.json:2"):
        read_training_metrics(path)


@pytest.fixture(scope="module")
def predictions(datasets_root, tmp_path_factory):
    """Predictions on mura_synthetic_test with known errors: every image's first fracture is
    found, its others are missed, and two images get a false positive (0.9 and 0.7)."""
    coco = json.loads(
        (datasets_root / "mura_synthetic/annotations/mura_synthetic_test.json").read_text()
    )
    preds, first = [], set()
    for a in coco["annotations"]:
        if a["image_id"] not in first:
            first.add(a["image_id"])
            x, y, w, h = a["bbox"]
            preds.append(
                {
                    "image_id": a["image_id"],
                    "category_id": 1,
                    "bbox": [x + 1, y, w, h],
                    "score": 0.8,
                }
            )
    ids = [im["id"] for im in coco["images"]]
    fps = {ids[0]: 0.7, ids[1]: 0.9}
    for i, s in fps.items():
        preds.append({"image_id": i, "category_id": 1, "bbox": [0, 0, 10, 10], "score": s})
    path = tmp_path_factory.mktemp("preds") / "coco_instances_results.json"
    path.write_text(json.dumps(preds))
    n_ann = {}
    for a in coco["annotations"]:
        n_ann[a["image_id"]] = n_ann.get(a["image_id"], 0) + 1
    return path, fps, {i: n - 1 for i, n in n_ann.items() if n > 1}


def test_visualize_writes_pictures_and_index(datasets_root, predictions, weights, tmp_path):
    preds, fps, missed = predictions
    train = tmp_path / "train_metrics.json"
    train.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "iteration": 19,
                    "total_loss": 1.2,
                    "loss_cls": 0.5,
                    "loss_box_reg": 0.3,
                    "lr": 0.01,
                },
                {
                    "iteration": 39,
                    "total_loss": 0.6,
                    "loss_cls": 0.2,
                    "loss_box_reg": 0.2,
                    "lr": 0.02,
                    "val/total_loss": 0.7,
                },
                {"iteration": 39, "bbox/AP": 20.0, "bbox/AP50": 45.0, "bbox/AP75": 10.0},
            ]
        )
    )
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(eval_metrics()))
    out = tmp_path / "vis"
    proc = run_script(
        "tools/visualize.py",
        "--dataset",
        "mura_synthetic_test",
        "--predictions",
        preds,
        "--metrics",
        train,
        "--eval-dir",
        tmp_path / "eval",
        "--output",
        out,
        "--max-images",
        "3",
        "--grid-max",
        "12",
        "--heatmaps",
        "2",
        "--config-file",
        SMOKE,
        "MODEL.WEIGHTS",
        weights,
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    assert f"open {out / 'index.html'}" in proc.stdout
    sel = json.loads((out / "selection.json").read_text())
    worst = sel["sections"]["worst-fp"]
    assert [(s["image_id"], s["max_fp_score"]) for s in worst] == sorted(
        fps.items(), key=lambda kv: -kv[1]
    )
    assert {s["image_id"] for s in sel["sections"]["missed"]} <= set(missed)
    assert all(s["missed"] == missed[s["image_id"]] for s in sel["sections"]["missed"])
    assert sel["summary"]["false_positives"] == 2
    assert sel["summary"]["missed"] == sum(missed.values())
    html = (out / "index.html").read_text()
    links = set(re.findall(r'(?:href|src)="([^"]+)"', html))
    for name in [
        "curves/pr.png",
        "curves/froc.png",
        "curves/roc_image.png",
        "curves/roc_study.png",
        "curves/training_losses.png",
        "curves/training_ap.png",
        "grids/grid_all.png",
    ]:
        assert name in links
    assert sum(link.startswith("heatmaps/") for link in links) == 2
    for s in worst:
        assert s["panel"] in links
    for link in links:
        img = cv2.imread(str(out / link))
        assert img is not None and img.shape[0] > 100 and img.std() > 10, link
    assert "FROC score" in html and "XR_" in html and "AUROC" in html  # tables


def test_visualize_ground_truth_only_by_body_part(datasets_root, tmp_path):
    proc = run_script(
        "tools/visualize.py",
        "--dataset",
        "mura_synthetic_test",
        "--body-part",
        "XR_NOSE",
        "--output",
        tmp_path,
        check=False,
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    assert proc.returncode == 2 and "XR_NOSE" in proc.stderr and "XR_WRIST" in proc.stderr
