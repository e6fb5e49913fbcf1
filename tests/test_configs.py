"""Every shipped config merges with the project's keys and builds a model (no weights loaded)."""

from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from fracture_d2.config import get_fracture_cfg

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_configs_exist():
    names = {p.name for p in CONFIGS}
    assert {
        "Base-RCNN-FPN.yaml",
        "faster_rcnn_R_50_FPN_1x.yaml",
        "faster_rcnn_R_50_FPN_3x.yaml",
        "faster_rcnn_R_101_FPN_3x.yaml",
        "faster_rcnn_R_18_FPN_demo.yaml",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_config_merges_and_builds(path):
    cfg = get_fracture_cfg()
    cfg.merge_from_file(str(path))
    cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1
    assert not cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    model = build_model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params > 1e6
    assert isinstance(model.backbone.bottom_up.stem.conv1.weight, torch.nn.Parameter)
