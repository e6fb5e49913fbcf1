"""Smoke-sized models with Detectron2's heads and with the project's batched heads."""

import torch
from detectron2.modeling import build_model

from fracture_d2.config import get_fracture_cfg

SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


def smoke_cfg(stock: bool = False, **fast):
    """The smoke config on the CPU with ``FRACTURE.FAST.<key>`` overrides; ``stock``:
    Detectron2's RPN and ROI heads instead of the batched ones."""
    cfg = get_fracture_cfg()
    cfg.merge_from_file(SMOKE)
    cfg.MODEL.DEVICE = "cpu"
    for k, v in fast.items():
        cfg.FRACTURE.FAST[k] = v
    if stock:
        cfg.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
        cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    return cfg


def stock_model(seed: int = 0) -> torch.nn.Module:
    """The smoke model with Detectron2's heads, randomly initialised from ``seed``."""
    torch.manual_seed(seed)
    return build_model(smoke_cfg(stock=True))


def batched(model: torch.nn.Module, **fast) -> torch.nn.Module:
    """The smoke model with the batched heads (``BATCHED_HEADS`` True unless given) and the
    weights of ``model``, in ``model``'s mode."""
    fast.setdefault("BATCHED_HEADS", True)
    out = build_model(smoke_cfg(**fast))
    out.load_state_dict(model.state_dict())
    return out.train(model.training)
