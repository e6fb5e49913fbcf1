"""Do two predictors give the same detections? Box by box: same class, IoU >= a bound and
score difference <= a bound, and nothing left over on either side."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from detectron2.structures import Instances, pairwise_iou


@dataclass
class Parity:
    """How two sets of detections over the same images compare."""

    images: int
    reference_boxes: int
    other_boxes: int
    matched: int
    min_iou: float  # over matched pairs (1.0 when nothing to match)
    max_score_diff: float  # over matched pairs
    ok: bool

    def as_dict(self) -> dict:
        """JSON-able."""
        return asdict(self)


def _match(ref: Instances, other: Instances, iou_min: float) -> list[tuple[int, int, float]]:
    """Greedy pairs (ref index, other index, IoU), reference boxes by descending score."""
    if len(ref) == 0 or len(other) == 0:
        return []
    iou = pairwise_iou(ref.pred_boxes, other.pred_boxes)
    iou[ref.pred_classes[:, None] != other.pred_classes[None, :]] = -1
    pairs, used = [], set()
    for i in torch.argsort(ref.scores, descending=True).tolist():
        row = iou[i].clone()
        row[list(used)] = -1
        j = int(row.argmax())
        if row[j] >= iou_min:
            pairs.append((i, j, float(row[j])))
            used.add(j)
    return pairs


def compare(
    reference: list[Instances],
    other: list[Instances],
    iou_min: float = 0.99,
    score_tol: float = 1e-3,
) -> Parity:
    """Compare detections image by image; ``ok`` when every box has its twin on both sides."""
    n_ref = n_other = n_matched = 0
    ious, diffs = [1.0], [0.0]
    for ref, oth in zip(reference, other, strict=True):
        pairs = _match(ref, oth, iou_min)
        n_ref, n_other, n_matched = n_ref + len(ref), n_other + len(oth), n_matched + len(pairs)
        for i, j, iou in pairs:
            ious.append(iou)
            diffs.append(abs(float(ref.scores[i]) - float(oth.scores[j])))
    max_diff = float(np.max(diffs))
    ok = n_matched == n_ref == n_other and max_diff <= score_tol
    return Parity(len(reference), n_ref, n_other, n_matched, min(ious), max_diff, ok)
