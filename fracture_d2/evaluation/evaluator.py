"""Detectron2 evaluators: the medical metrics during training / ``--eval-only``, and COCO AP
restricted to the images whose boxes were annotated."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils import comm
from tabulate import tabulate

from fracture_d2.utils_io import write_json_atomic

from .inputs import EvaluationError, load_ground_truth
from .predictions import predictions_from_list, with_head_scores
from .report import write_report
from .suite import EvalOptions, evaluate_predictions, headline

logger = logging.getLogger("fracture_d2")


def eval_options(cfg) -> EvalOptions:
    """:class:`EvalOptions` from ``cfg.FRACTURE.EVAL``."""
    ev = cfg.FRACTURE.EVAL
    return EvalOptions(
        criterion=ev.FROC_CRITERION,
        iou_threshold=ev.IOU_THRESHOLD,
        image_method=ev.IMAGE_SCORE,
        study_method=ev.STUDY_SCORE,
        threshold=ev.THRESHOLD,
        study_threshold=ev.STUDY_THRESHOLD,
        bootstrap=ev.BOOTSTRAP,
        seed=ev.BOOTSTRAP_SEED,
    ).check()


def image_table_of(dataset_name: str) -> str | None:
    """The registered image-level table of a dataset, if the file exists."""
    table = MetadataCatalog.get(dataset_name).get("image_table", "")
    return table if table and Path(table).is_file() else None


class AnnotatedCOCOEvaluator(COCOEvaluator):
    """COCOEvaluator over the images whose boxes were annotated.

    ``<name>_{val,test}_all`` also hold positive images without boxes (``"annotated":
    false``); COCOeval would count every detection on them as a false positive.
    """

    def evaluate(self, img_ids=None):
        if img_ids is None and getattr(self, "_coco_api", None) is not None:
            images = self._coco_api.dataset.get("images", [])
            keep = [im["id"] for im in images if im.get("annotated", True)]
            if len(keep) < len(images):
                self._logger.info(f"COCO AP over the {len(keep)} annotated of {len(images)} images")
                img_ids = keep
        return super().evaluate(img_ids)


class FractureEvaluator(DatasetEvaluator):
    """FROC, image- and study-level metrics with CIs, per body part (see
    :func:`fracture_d2.evaluation.suite.evaluate_predictions`).

    Writes ``metrics.json``, ``metrics.csv``, ``report.md`` and score tables to
    ``output_dir`` and returns the headline numbers as ``{"fracture": {...}}`` (logged by
    EvalHook as ``fracture/froc``, ``fracture/image_auroc``, ``fracture/study_kappa``, ...).
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir=None,
        options: EvalOptions | None = None,
        distributed: bool = True,
    ):
        meta = MetadataCatalog.get(dataset_name)
        self._name = dataset_name
        self._json_file = meta.get("json_file")
        self._table = image_table_of(dataset_name)
        self._output_dir = output_dir
        self._options = (options or EvalOptions()).check()
        self._distributed = distributed
        self._cpu = torch.device("cpu")
        self.reset()

    def reset(self):
        self._predictions, self._head_scores = [], {}

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs, strict=True):
            if "instances" in out:
                instances = out["instances"].to(self._cpu)
                self._predictions.extend(instances_to_coco_json(instances, inp["image_id"]))
            if "image_score" in out:  # a model with an image-level head
                self._head_scores[int(inp["image_id"])] = round(float(out["image_score"]), 6)

    def _dataset_category_ids(self, preds: list) -> list:
        mapping = MetadataCatalog.get(self._name).get("thing_dataset_id_to_contiguous_id")
        if mapping:
            reverse = {v: k for k, v in mapping.items()}
            for p in preds:
                p["category_id"] = reverse[p["category_id"]]
        return preds

    def evaluate(self):
        preds, heads = self._predictions, self._head_scores
        if self._distributed:
            comm.synchronize()
            preds = list(itertools.chain(*comm.gather(preds, dst=0)))
            heads = dict(itertools.chain(*(h.items() for h in comm.gather(heads, dst=0))))
            if not comm.is_main_process():
                return {}
        if not self._json_file:
            logger.warning(f"{self._name}: no json_file in its metadata; FractureEvaluator skipped")
            return {}
        try:
            gt = load_ground_truth(self._json_file, self._name, self._table)
            source = f"inference on {self._name}"
            p = predictions_from_list(self._dataset_category_ids(preds), gt, source, True)
            if heads:
                p = with_head_scores(p, gt, heads, source)
            tables = {}
            metrics = evaluate_predictions(gt, p, self._options, tables)
        except EvaluationError as e:
            logger.warning(f"FractureEvaluator skipped: {e}")
            return {}
        if self._output_dir:
            if heads:  # for tools/evaluate.py --head-scores
                write_json_atomic(Path(self._output_dir) / "image_head_scores.json", heads)
            paths = write_report(metrics, self._output_dir, tables)
            logger.info(f"fracture metrics written to {paths['metrics.json']}")
        results = headline(metrics)
        table = tabulate(list(results.items()), ["metric", "value"], "pipe", floatfmt=".4f")
        logger.info(f"Fracture metrics on {self._name}:\n{table}")
        return {"fracture": results}
