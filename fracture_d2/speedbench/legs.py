"""The two legs of the speed benchmark: stock Detectron2 and the project, on one config."""

from __future__ import annotations

import torch

# Test-time sizes the stock leg takes from Detectron2's defaults (sized for COCO's 80 classes)
# rather than from the config: the project's configs size them for a few fractures per image.
STOCK_TEST_KEYS = (
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "TEST.DETECTIONS_PER_IMAGE",
)


def stock_config(cfg):
    """The stock Detectron2 leg: the same config with Detectron2's RPN and ROI heads, the
    project's other speed switches off and Detectron2's default test-time sizes
    (:data:`STOCK_TEST_KEYS`)."""
    from detectron2.config import get_cfg

    stock, d2 = cfg.clone(), get_cfg()
    stock.defrost()
    for key in STOCK_TEST_KEYS:
        node, d2_node = stock, d2
        *path, leaf = key.split(".")
        for p in path:
            node, d2_node = node[p], d2_node[p]
        node[leaf] = d2_node[leaf]
    if stock.MODEL.PROPOSAL_GENERATOR.NAME == "BatchedRPN":
        stock.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
    if stock.MODEL.ROI_HEADS.NAME == "BatchedROIHeads":
        stock.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    stock.FRACTURE.FAST.CHANNELS_LAST = False
    stock.FRACTURE.FAST.COMPILE_BACKBONE = False
    stock.FRACTURE.FAST.STATIC_INFERENCE = False
    stock.FRACTURE.FAST.METRICS_PERIOD = 1
    stock.FRACTURE.FAST.FUSED_GRAD_CLIP = False  # DefaultTrainer clips its own way anyway
    stock.FRACTURE.FAST.INFERENCE_DTYPE = "float32"
    stock.DATALOADER.PIN_MEMORY = False
    stock.freeze()
    return stock


def leg_flags(name: str, cfg) -> None:
    """Process-wide backend flags for one leg before its timed block: the project's from its
    config (:func:`fracture_d2.fast.apply_backend_flags`); PyTorch's defaults for the
    stock leg (TF32 for cuDNN convolutions, not for matmuls), so that building the project's
    Trainer in the same process does not speed up the stock leg."""
    from fracture_d2.fast import apply_backend_flags

    if name == "project":
        apply_backend_flags(cfg)
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = True
