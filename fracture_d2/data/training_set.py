"""The images a model trains on: ``DATASETS.TRAIN``'s, pseudo boxes laid over them, filtered by
what the model can learn from, counted by kind."""

from __future__ import annotations

import logging
from collections import Counter

from .pseudo_boxes import apply_pseudo_boxes, read_pseudo_boxes

logger = logging.getLogger("fracture_d2")


def kind_of(d: dict) -> str:
    """``boxed positive``, ``pseudo-boxed positive``, ``negative`` or ``image-label-only
    positive`` (an image whose boxes are not known)."""
    if not d.get("annotated", True):
        return "image-label-only positive"
    if not d.get("annotations"):
        return "negative"
    return "pseudo-boxed positive" if d.get("pseudo") else "boxed positive"


def training_dicts(cfg, image_labels: bool) -> list[dict]:
    """Detectron2 dataset dicts of ``cfg.DATASETS.TRAIN``, with ``FRACTURE.PSEUDO_BOXES`` applied.

    Args:
        cfg: the config.
        image_labels: whether the model learns from image labels alone (an image-level head);
            if not, image-label-only positives are left out (trained on, their fractures would
            be background), and so are they with ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``.

    Returns:
        The kept dicts; the counts by kind and the images left out are logged.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.build import check_metadata_consistency

    names = list(cfg.DATASETS.TRAIN)
    per_name = {n: DatasetCatalog.get(n) for n in names}
    if len(names) > 1:
        check_metadata_consistency("thing_classes", names)
    if cfg.FRACTURE.PSEUDO_BOXES:
        path = cfg.FRACTURE.PSEUDO_BOXES
        target, boxes = read_pseudo_boxes(
            path, names, lambda n: MetadataCatalog.get(n).thing_classes
        )
        n = apply_pseudo_boxes(per_name[target], boxes, path)
        logger.info(f"{path}: pseudo boxes for {n} image-label-only positives of {target}")
    kept, left_out = [], Counter()
    for d in (d for n in names for d in per_name[n]):
        kind = kind_of(d)
        if kind == "image-label-only positive" and not image_labels:
            left_out[f"{kind} (the model has no image-level head)"] += 1
        elif kind == "negative" and cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS:
            left_out[f"{kind} (DATALOADER.FILTER_EMPTY_ANNOTATIONS)"] += 1
        else:
            kept.append(d)
    counts = Counter(kind_of(d) for d in kept)
    logger.info(
        f"training images of {names}: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + "".join(f"; left out {v} {k}" for k, v in sorted(left_out.items()))
    )
    return kept
