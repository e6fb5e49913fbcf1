"""tools/train_net.py trains a few iterations, checkpoints, and evaluates with COCOEvaluator."""

import json

import pytest

from conftest import run_script

SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


@pytest.fixture(scope="module")
def trained(datasets_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    run_script(
        "tools/train_net.py",
        "--config-file",
        SMOKE,
        "OUTPUT_DIR",
        out,
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    return out


def test_training_writes_checkpoints_and_metrics(trained):
    assert (trained / "model_final.pth").is_file()
    assert (trained / "model_0000001.pth").is_file()  # CHECKPOINT_PERIOD 2 -> after iter 2
    assert (trained / "last_checkpoint").read_text().strip() == "model_final.pth"
    records = [json.loads(line) for line in open(trained / "metrics.json")]
    assert max(r["iteration"] for r in records if "total_loss" in r) == 3  # 4 iterations
    final = [r for r in records if "bbox/AP50" in r]
    assert [r["iteration"] for r in final] == [4]  # final evaluation, logged at MAX_ITER


def test_eval_only_returns_bbox_metrics(trained, datasets_root):
    proc = run_script(
        "tools/train_net.py",
        "--config-file",
        SMOKE,
        "--eval-only",
        "MODEL.WEIGHTS",
        trained / "model_final.pth",
        "OUTPUT_DIR",
        trained / "ev",
        "DATASETS.TEST",
        "('mura_synthetic_test',)",
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in proc.stdout + proc.stderr
    preds = trained / "ev" / "inference" / "mura_synthetic_test" / "coco_instances_results.json"
    assert preds.is_file()
    for p in json.load(open(preds)):
        assert len(p["bbox"]) == 4 and 0.0 <= p["score"] <= 1.0


def test_unprepared_dataset_says_how_to_prepare(tmp_path):
    proc = run_script(
        "tools/train_net.py",
        "--config-file",
        SMOKE,
        "OUTPUT_DIR",
        tmp_path,
        "DATASETS.TRAIN",
        "('mura_train',)",
        check=False,
        env={"DETECTRON2_DATASETS": str(tmp_path / "empty")},
    )
    assert proc.returncode != 0
    assert "prepare_mura.py" in proc.stderr
