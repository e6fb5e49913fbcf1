"""AP50 and FROC score of one run under many patient-bootstrap resamples at once.

A paired comparison draws the *same* patients for both configs in every resample, so each
run's metric must be available per resample (a row of the ``(B, U)`` weight matrix of
:mod:`.bootstrap`). The FROC score already is (:func:`.froc.sensitivities`); COCO AP50 is
computed here from the matches of :func:`.coco_ap.match_coco` (done once): a drawn image's
detections and boxes count as often as its patient was drawn. With every weight 1 both equal
the report's numbers exactly (tested).
"""

from __future__ import annotations

import numpy as np

from .bootstrap import Bootstrap
from .coco_ap import RECALL_THRESHOLDS, match_coco
from .froc import froc_stats, match_lesions, sensitivities, xywh_to_xyxy
from .inputs import GroundTruth, Predictions


def _on_annotated(gt: GroundTruth, preds: Predictions) -> Predictions:
    keep = gt.annotated[preds.image]
    return Predictions(
        preds.source, preds.image[keep], preds.xywh[keep], preds.score[keep], preds.category[keep]
    )


def _interpolated_ap(tp: np.ndarray, fp: np.ndarray, w: np.ndarray, npig: np.ndarray):
    """COCO's 101-point interpolated AP per row of detection weights ``w`` ``(B, D)`` (score
    order); NaN where a row draws no ground-truth box."""
    tp_c = np.cumsum(w * tp, axis=1)
    fp_c = np.cumsum(w * fp, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rc = tp_c / npig[:, None]
        pr = tp_c / (tp_c + fp_c + np.spacing(1))
    env = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # best precision at >= recall
    out = np.full(len(w), np.nan)
    for b in np.flatnonzero(npig > 0):
        inds = np.searchsorted(rc[b], RECALL_THRESHOLDS, side="left")
        ok = inds < rc.shape[1]
        q = np.zeros(len(RECALL_THRESHOLDS))
        q[ok] = env[b, inds[ok]]
        out[b] = q.mean()
    return out


def ap50_resampled(gt: GroundTruth, preds: Predictions, image_weights: np.ndarray) -> np.ndarray:
    """COCO AP50 (percent, area "all", 100 detections per image) for each row of
    ``image_weights`` ``(B, I)``, over the annotated images; NaN where undefined."""
    p = _on_annotated(gt, preds)
    m = match_coco(
        gt.box_image,
        gt.box_xywh,
        gt.box_category,
        gt.box_area,
        gt.box_crowd,
        p.image,
        p.xywh,
        p.score,
        p.category,
        gt.image_ids,
    )
    w_img = np.asarray(image_weights, np.float64) * gt.annotated[None, :]
    at50 = (m.hit_iou == 0) & (m.hit_area == 0)
    hit = np.zeros(len(m.image), bool)
    hit_ignored = np.zeros(len(m.image), bool)
    hit[m.hit_det[at50]] = True
    hit_ignored[m.hit_det[at50]] = m.hit_ignored[at50]
    # COCOeval drops detections matched to ignored (crowd) boxes and unmatched ones outside
    # the area range; the rest are hits or false positives
    tp = hit & ~hit_ignored
    fp = ~hit & ~m.out_of_range[:, 0]
    per_cat = []
    for cat in m.categories:
        sel = m.order[m.category[m.order] == cat]
        counted = (m.gt_category == cat) & ~m.gt_ignored[:, 0]
        npig = w_img @ np.bincount(m.gt_image[counted], minlength=len(gt)).astype(np.float64)
        if not (npig > 0).any():
            continue
        per_cat.append(_interpolated_ap(tp[sel], fp[sel], w_img[:, m.image[sel]], npig))
    if not per_cat:
        return np.full(len(w_img), np.nan)
    with np.errstate(invalid="ignore"):
        return 100.0 * np.nanmean(np.stack(per_cat), axis=0)  # categories with boxes drawn


def froc_resampled(
    gt: GroundTruth,
    preds: Predictions,
    boot: Bootstrap,
    criterion: str = "iou",
    iou_threshold: float = 0.5,
) -> tuple[float, np.ndarray]:
    """The FROC score on all data and for each resample of ``boot`` ``(B,)`` (NaN where a
    resample draws no lesion), over the annotated images as in :func:`.froc.froc_metrics`."""
    ev = gt.annotated
    lesion = ev[gt.box_image] & ~gt.box_crowd
    p = _on_annotated(gt, preds)
    l_image = gt.box_image[lesion]
    is_tp = match_lesions(
        l_image,
        xywh_to_xyxy(gt.box_xywh[lesion]),
        p.image,
        xywh_to_xyxy(p.xywh),
        p.score,
        len(gt),
        criterion,
        iou_threshold,
    )
    units, unit = np.unique(boot.unit_of_image[ev], return_inverse=True)
    local = np.full(len(gt), -1)
    local[ev] = unit
    st = froc_stats(
        p.score,
        is_tp,
        local[p.image],
        np.bincount(local[l_image], minlength=len(units)),
        np.bincount(unit, minlength=len(units)),
    )
    point = float(sensitivities(st, np.ones((1, len(units))))[0].mean())
    return point, sensitivities(st, boot.weights[:, units]).mean(1)
