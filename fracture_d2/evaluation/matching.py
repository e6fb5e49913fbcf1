"""Match predicted boxes to ground-truth lesions in one image (the FROC hit rule).

Shared by the metrics (FROC, sensitivity) and the pictures (true positive / false positive /
missed colouring), so both always agree on what counts as a hit.
"""

from __future__ import annotations

import numpy as np

CRITERIA = ("iou", "center")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes -> ``(N, M)``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(
    gt_boxes, pred_boxes, scores, criterion: str = "iou", iou_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of one image's predictions to its lesions, highest score first.

    A prediction hits a lesion if their IoU >= ``iou_threshold`` (``criterion="iou"``) or if
    the prediction's centre lies inside the lesion box (``criterion="center"``). Each lesion
    can be hit once: among the still-unhit lesions a prediction takes the one with the highest
    IoU. A prediction that hits nothing (including a second prediction on an already hit
    lesion) is a false positive.

    Args:
        gt_boxes: ``(G, 4)`` lesion boxes, xyxy pixels.
        pred_boxes: ``(P, 4)`` predicted boxes, xyxy pixels.
        scores: ``(P,)`` prediction scores.

    Returns:
        ``(is_tp, hit_by)``: ``is_tp`` is a ``(P,)`` bool array in the input order; ``hit_by``
        is a ``(G,)`` int array with the index of the prediction that hit each lesion, or -1.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    gt = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    pred = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    is_tp = np.zeros(len(pred), bool)
    hit_by = np.full(len(gt), -1, int)
    if len(gt) == 0 or len(pred) == 0:
        return is_tp, hit_by
    iou = box_iou(pred, gt)
    if criterion == "iou":
        ok = iou >= iou_threshold
    else:
        cx = (pred[:, 0] + pred[:, 2]) / 2
        cy = (pred[:, 1] + pred[:, 3]) / 2
        ok = (
            (cx[:, None] >= gt[None, :, 0])
            & (cx[:, None] <= gt[None, :, 2])
            & (cy[:, None] >= gt[None, :, 1])
            & (cy[:, None] <= gt[None, :, 3])
        )
    order = np.argsort(-scores, kind="stable")
    # Predictions that qualify for no lesion cannot hit; skipping them keeps large runs fast.
    for p in order[ok[order].any(axis=1)]:
        candidates = np.flatnonzero(ok[p] & (hit_by < 0))
        if len(candidates):
            g = candidates[np.argmax(iou[p, candidates])]
            hit_by[g], is_tp[p] = p, True
    return is_tp, hit_by
