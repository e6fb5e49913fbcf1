"""tools/ensemble.py: Weighted Boxes Fusion of several runs' predictions, read back by
tools/evaluate.py; predictions of different image sets or classes are refused."""

import json
from pathlib import Path

import pytest
from bench_utils import DATASET, degrade, write_case, write_run

from fracture_d2.benchmarking.ensemble import fuse
from fracture_d2.benchmarking.ensemble_inputs import PredictionFile

from conftest import run_script


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    ds, preds = write_case(root / "d2" / "mura_synthetic" / "annotations" / f"{DATASET}.json")
    for s in (0, 1):
        write_run(root / "runs" / f"seed{s}", ds, degrade(preds, s, 0.3), "frcnn", s)
    return root


def _preds(root, s):
    return root / "runs" / f"seed{s}" / "inference" / DATASET / "coco_instances_results.json"


def _ap50(report_dir):
    return json.loads((report_dir / "metrics.json").read_text())["coco"]["overall"]["AP50"]


def test_wbf_ensemble_is_evaluated_like_any_predictions(runs, tmp_path):
    env = {"DETECTRON2_DATASETS": str(runs / "d2")}
    out = tmp_path / "ens"
    proc = run_script("tools/ensemble.py", _preds(runs, 0), _preds(runs, 1), "--out", out, env=env)
    assert f"--dataset {DATASET}" in proc.stdout
    fused = json.loads((out / "predictions.json").read_text())
    n_in = sum(len(json.loads(_preds(runs, s).read_text())) for s in (0, 1))
    assert 0 < len(fused) < n_in  # overlapping boxes of the two runs became one
    run_script(
        "tools/evaluate.py",
        "--dataset",
        DATASET,
        "--predictions",
        out / "predictions.json",
        "--out",
        out / "eval",
        "--bootstrap",
        "0",
        env=env,
    )
    inputs = [_ap50(runs / "runs" / f"seed{s}" / "inference" / DATASET) for s in (0, 1)]
    assert _ap50(out / "eval") > min(inputs) - 5.0  # fusing two similar runs loses nothing much


def test_wbf_known_answer():
    """Overlapping boxes of two runs become their score-weighted mean with the mean score; a
    box only one run found keeps half its score (conf_type avg, equal weights)."""
    a = PredictionFile(
        Path("a"),
        "coco",
        [
            {"image_id": 1, "category_id": 1, "bbox": [100, 100, 100, 100], "score": 0.9},
            {"image_id": 2, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.8},
        ],
    )
    b = PredictionFile(
        Path("b"),
        "coco",
        [
            {"image_id": 1, "category_id": 1, "bbox": [110, 110, 90, 90], "score": 0.6},
            {
                "image_id": 2,
                "category_id": 1,
                "bbox": [300, 300, 50, 50],
                "score": 0.0,
            },  # no weight
        ],
    )
    out = {r["image_id"]: r for r in fuse([a, b])}
    assert out[1]["bbox"] == pytest.approx([104.0, 104.0, 96.0, 96.0], abs=0.01)
    assert out[1]["score"] == pytest.approx(0.75)
    assert out[2]["bbox"] == pytest.approx([10, 10, 30, 30]) and out[2]["score"] == pytest.approx(
        0.4
    )
    assert len(out) == 2


def test_predictions_of_other_images_or_classes_are_refused(runs, tmp_path):
    env = {"DETECTRON2_DATASETS": str(runs / "d2")}
    other = tmp_path / "inference" / "mura_synthetic_val" / "coco_instances_results.json"
    other.parent.mkdir(parents=True)
    other.write_text(_preds(runs, 1).read_text())
    doc = {
        "format": "fracture_d2.predictions/1",
        "categories": [{"id": 1, "name": "fracture"}],
        "images": [{"id": 1, "file_name": "a.png"}],
        "results": [],
    }
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(doc))
    b.write_text(json.dumps({**doc, "categories": [{"id": 1, "name": "lesion"}]}))
    for files, bad, says in [
        ((_preds(runs, 0), other), other, "was made on dataset mura_synthetic_val"),
        ((a, b), b, "same class list"),
        ((a, _preds(runs, 0)), _preds(runs, 0), "is coco output"),
    ]:
        proc = run_script(
            "tools/ensemble.py", *files, "--out", tmp_path / "out", check=False, env=env
        )
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {bad}:")
        assert says in lines[0]
    assert not (tmp_path / "out").exists()


def test_predict_py_outputs_fuse_into_a_predict_py_document(tmp_path):
    doc = {
        "format": "fracture_d2.predictions/1",
        "info": {"threshold": 0.5},
        "categories": [{"id": 1, "name": "fracture"}],
        "images": [
            {"id": 1, "file_name": "a.png", "score": 0.9, "overlay": "overlays/a.png"},
            {"id": 2, "file_name": "b.png", "score": 0.0},
        ],
        "results": [{"image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.9}],
    }
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for p in paths:
        p.write_text(json.dumps(doc))
    run_script("tools/ensemble.py", *paths, "--out", tmp_path / "ens")
    out = json.loads((tmp_path / "ens" / "predictions.json").read_text())
    assert out["format"] == doc["format"] and out["info"]["ensemble"]["method"] == "wbf"
    assert [im["score"] for im in out["images"]] == [0.9, 0.0]
    assert [im["positive"] for im in out["images"]] == [True, False]
    assert "overlay" not in out["images"][0] and len(out["results"]) == 1
