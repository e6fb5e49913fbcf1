"""The project's Trainer: Detectron2's DefaultTrainer with the project's evaluators."""

from __future__ import annotations

import os

from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator

import fracture_d2.data  # noqa: F401  (registers the datasets)


class Trainer(DefaultTrainer):
    """DefaultTrainer + COCOEvaluator (pure-Python pycocotools; boxes only)."""

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return COCOEvaluator(dataset_name, tasks=tuple(cfg.FRACTURE.EVAL_TASKS),
                             output_dir=output_folder, use_fast_impl=False)
