"""Pseudo boxes from a teacher: its detections on the image-label-only positives, kept by the
rule of :func:`fracture_d2.data.pseudo_boxes.select_boxes` (``tools/pseudo_label.py``), and
scored against the real boxes where those are known."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from fracture_d2.data.images import load_image
from fracture_d2.data.pseudo_boxes import pseudo_coco, select_boxes
from fracture_d2.evaluation.froc import xywh_to_xyxy
from fracture_d2.evaluation.matching import match_detections

logger = logging.getLogger("fracture_d2")


@dataclass
class PseudoRule:
    """Which of a teacher's boxes on an image known to be abnormal become pseudo boxes."""

    floor: float = 0.05  # the best box is kept if it scores at least this
    threshold: float = 0.5  # any other box is kept if it scores at least this

    def check(self) -> PseudoRule:
        if not 0.0 <= self.floor <= self.threshold <= 1.0:
            raise ValueError(
                f"pseudo-box rule needs 0 <= floor <= threshold <= 1, got floor {self.floor}, "
                f"threshold {self.threshold}"
            )
        return self


def label_only_positives(dicts: list[dict]) -> list[dict]:
    """The image-label-only positives (``annotated`` false, ``image_label`` 1) of dataset
    dicts: the images a teacher labels."""
    return [d for d in dicts if not d.get("annotated", True) and d.get("image_label", 0) == 1]


def pseudo_label(predictor, dataset: str, classes, dicts, rule: PseudoRule, info=None, batch=8):
    """Run ``predictor`` (a :class:`~fracture_d2.inference.BatchPredictor`) on the
    image-label-only positives of ``dicts`` (dataset ``dataset``) and keep boxes by ``rule``.

    Returns:
        The pseudo-box COCO dict (:func:`~fracture_d2.data.pseudo_boxes.pseudo_coco`) and counts.
    """
    rule.check()
    todo = label_only_positives(dicts)
    detections, kept = [], 0
    for start in tqdm(range(0, len(todo), batch), desc="pseudo boxes", unit="batch"):
        chunk = todo[start : start + batch]
        for d, inst in zip(
            chunk, predictor([load_image(d["file_name"]) for d in chunk]), strict=True
        ):
            keep = select_boxes(inst.scores.numpy(), rule.floor, rule.threshold)
            boxes = inst.pred_boxes.tensor.numpy()[keep]
            scores = inst.scores.numpy()[keep]
            labels = inst.pred_classes.numpy()[keep]
            kept += len(keep)
            image = {"id": d["image_id"], "file_name": d["file_name"]}
            image.update(width=d["width"], height=d["height"])
            detections.append((image, (boxes, scores, labels)))
    coco = pseudo_coco(dataset, list(classes), detections, {**asdict(rule), **(info or {})})
    counts = {
        "image_label_only_positives": len(todo),
        "images_with_pseudo_boxes": len(coco["images"]),
        "pseudo_boxes": kept,
    }
    return coco, counts


def score_pseudo_boxes(pseudo: dict, hidden: dict, iou_threshold: float = 0.5) -> dict:
    """Pseudo boxes against the real boxes they stand in for (``make_box_fraction.py``'s
    ``*_hidden.json``), by the FROC hit rule: the share of pseudo boxes that hit a real box
    (precision), of real boxes hit (recall), and of labelled images with at least one hit."""

    def xyxy(anns):
        return xywh_to_xyxy(np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4))

    real, mine = defaultdict(list), defaultdict(list)
    for a in hidden.get("annotations", []):
        real[a["image_id"]].append(a)
    for a in pseudo.get("annotations", []):
        mine[a["image_id"]].append(a)
    hits = boxes = found = images_hit = 0
    for image_id, anns in mine.items():
        scores = [a.get("score", 1.0) for a in anns]
        is_tp, hit_by = match_detections(
            xyxy(real.get(image_id, [])), xyxy(anns), scores, iou_threshold=iou_threshold
        )
        hits, boxes = hits + int(is_tp.sum()), boxes + len(anns)
        found += int((hit_by >= 0).sum())
        images_hit += bool(is_tp.any())
    n_real = sum(len(v) for v in real.values())
    return {
        "pseudo_boxes": boxes,
        "precision": hits / boxes if boxes else None,
        "recall": found / n_real if n_real else None,
        "images_with_a_hit": images_hit / len(mine) if mine else None,
    }
