"""Test-time augmentation with Detectron2's own ``GeneralizedRCNNWithTTA``, as Detectron2's
``tools/train_net.py`` runs it: switched on by ``TEST.AUG.ENABLED`` and set by Detectron2's
``TEST.AUG.MIN_SIZES`` / ``MAX_SIZE`` / ``FLIP`` (the image resized to each short side, each
also flipped left/right; boxes merged by the model's NMS).

The evaluators write to ``OUTPUT_DIR/inference_TTA/<dataset>/`` (Detectron2 uses one
``inference_TTA`` folder, where several test datasets would overwrite each other's files) and
the results are returned with ``_TTA`` appended to their keys, as in Detectron2.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict

from detectron2.engine import hooks
from detectron2.modeling import GeneralizedRCNN, GeneralizedRCNNWithTTA

logger = logging.getLogger("fracture_d2")


def check_tta(cfg) -> None:
    """Raise ValueError if ``TEST.AUG.ENABLED`` is set for a model Detectron2's TTA cannot run."""
    if cfg.TEST.AUG.ENABLED and cfg.MODEL.META_ARCHITECTURE != "GeneralizedRCNN":
        raise ValueError(
            "TEST.AUG.ENABLED: Detectron2's test-time augmentation (GeneralizedRCNNWithTTA) runs "
            f"R-CNN models only, not MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r}"
        )


def test_with_tta(trainer_cls, cfg, model) -> OrderedDict:
    """Evaluate ``model`` on every ``DATASETS.TEST`` through ``GeneralizedRCNNWithTTA``.

    Args:
        trainer_cls: the Trainer class (its ``build_evaluator`` and ``test`` are used).

    Returns:
        ``Trainer.test``'s results with ``_TTA`` appended to each key (``bbox_TTA`` for one
        test dataset, ``<dataset>_TTA`` for several).
    """
    check_tta(cfg)
    plain = getattr(model, "module", model)  # DDP: TTA wraps the model itself
    if not isinstance(plain, GeneralizedRCNN):
        raise ValueError(f"TEST.AUG.ENABLED: TTA needs a GeneralizedRCNN, got {type(plain)}")
    if cfg.FRACTURE.FAST.STATIC_INFERENCE:
        # the static-shape path replaces the model's own forward, which TTA calls per size
        logger.info("TTA runs the model's own inference (FRACTURE.FAST.STATIC_INFERENCE off)")
        cfg = cfg.clone()
        cfg.defrost()
        cfg.FRACTURE.FAST.STATIC_INFERENCE = False
        cfg.freeze()
    logger.info(
        f"Running inference with test-time augmentation: short sides {cfg.TEST.AUG.MIN_SIZES}, "
        f"flip {cfg.TEST.AUG.FLIP}"
    )
    tta = GeneralizedRCNNWithTTA(cfg, plain)
    evaluators = [
        trainer_cls.build_evaluator(
            cfg, name, output_folder=os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name)
        )
        for name in cfg.DATASETS.TEST
    ]
    res = trainer_cls.test(cfg, tta, evaluators)
    return OrderedDict((f"{k}_TTA", v) for k, v in res.items())


def tta_hooks(trainer) -> list:
    """An ``EvalHook`` evaluating with TTA after the last iteration, if ``TEST.AUG.ENABLED``."""
    cfg = trainer.cfg
    if not cfg.TEST.AUG.ENABLED:
        return []
    check_tta(cfg)
    return [hooks.EvalHook(0, lambda: test_with_tta(type(trainer), cfg, trainer.model))]
