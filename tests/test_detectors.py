"""RetinaNet and Cascade R-CNN (Detectron2's built-ins) train and evaluate with the project's
Trainer, and test-time augmentation runs through Detectron2's GeneralizedRCNNWithTTA."""

import json

import pytest

from fracture_d2.config import get_fracture_cfg
from fracture_d2.data.register import register_all
from fracture_d2.engine.trainer import Trainer
from fracture_d2.engine.tta import check_tta

QUICK = "configs/quick_schedules/{}_R_18_FPN_smoke.yaml"
VAL = "mura_synthetic_val"
# smaller still than the smoke run (64 px), one TTA size (+ flip): a few seconds per evaluation
FAST = [
    "SOLVER.CHECKPOINT_PERIOD",
    100,
    "FRACTURE.EVAL.BOOTSTRAP",
    20,
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MIN_SIZE_TEST",
    64,
    "TEST.AUG.MIN_SIZES",
    "(64,)",
]


def _cfg(name, out, *opts):
    cfg = get_fracture_cfg()
    cfg.merge_from_file(QUICK.format(name))
    cfg.merge_from_list(["OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", 2, *FAST, *opts])
    cfg.freeze()
    return cfg


def _train(cfg):
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


def test_retinanet_trains_and_is_evaluated(datasets_root, tmp_path):
    register_all(datasets_root)
    trainer = _train(_cfg("retinanet", tmp_path))
    results = trainer._last_eval_results  # DefaultTrainer keeps the final evaluation here
    assert "bbox" in results and "fracture" in results  # COCOEvaluator + FractureEvaluator
    report = json.loads((tmp_path / "inference" / VAL / "metrics.json").read_text())
    assert report["dataset"] == VAL and "froc" in report
    with pytest.raises(ValueError, match="R-CNN models only"):  # as Detectron2: no RetinaNet TTA
        check_tta(_cfg("retinanet", tmp_path, "TEST.AUG.ENABLED", True))


def test_cascade_rcnn_trains_and_is_evaluated_with_tta(datasets_root, tmp_path):
    register_all(datasets_root)
    cfg = _cfg("cascade_rcnn", tmp_path, "TEST.AUG.ENABLED", True)
    trainer = _train(cfg)
    plain = trainer._last_eval_results
    res = Trainer.test_with_TTA(cfg, trainer.model)
    assert {"bbox_TTA", "fracture_TTA"} <= set(res)  # Detectron2's naming
    tta_dir = tmp_path / "inference_TTA" / VAL
    assert json.loads((tta_dir / "metrics.json").read_text())["dataset"] == VAL
    assert plain["bbox"] != res["bbox_TTA"]  # the flipped pass changes the detections
