"""What model a service runs: config, weights hash, classes and operating points.

Every answer carries this identity so that a result stored by a PACS bridge or a notebook can
be traced to the exact weights that produced it.
"""

from __future__ import annotations

import os
from pathlib import Path

from fracture_d2.inference.results import categories
from fracture_d2.utils_io import sha256_file


def model_identity(
    cfg,
    config_file: str,
    model_file: str | os.PathLike,
    backend: str = "pytorch",
    threshold: float = 0.5,
    score_method: str = "max",
    source: dict | None = None,
) -> dict:
    """The identity ``GET /v1/model`` returns and every prediction repeats.

    Args:
        cfg: the model's config (classes, test-time thresholds and sizes).
        config_file: the YAML the config came from (its file name is the model's name).
        model_file: the file whose weights run: a checkpoint or an exported model.
        backend: ``pytorch``, ``torchscript`` or ``onnxruntime``.
        threshold: the service's default operating point.
        score_method: how the image score is made from box scores.
        source: for an exported model, what it was exported from (its own metadata).
    """
    return {
        "config_name": Path(config_file).stem,
        "config_file": str(config_file),
        "weights_file": Path(model_file).name,
        "weights_sha256": sha256_file(model_file),
        "backend": backend,
        "exported_from": source,
        "classes": categories(cfg),
        "thresholds": {
            "default": threshold,
            "score_thresh_test": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "nms_thresh_test": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
        },
        "image_score": score_method,
        "input": {
            "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
            "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
            "format": cfg.INPUT.FORMAT,
        },
        "device": cfg.MODEL.DEVICE,
    }
