"""FROC: lesion-level sensitivity against false positives per image.

Hits follow :func:`fracture_d2.evaluation.match_detections` (IoU >= t or centre inside; each
lesion hit once; anything else a false positive). Predictions are accepted from the highest
score down; an operating point accepts every prediction scoring at least some threshold, so
equal scores enter together. The sensitivity at ``f`` false positives per image is that of the
most permissive operating point with at most ``f`` FPs per image (a step function, never an
interpolation between operating points). The FROC score is the mean over
1/8, 1/4, 1/2, 1, 2, 4, 8 FPs per image, as in LUNA16 and CAMELYON16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bootstrap import ci95, percentile_ci
from .matching import match_detections
from .notes import Notes

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def _by_image(image: np.ndarray, n_images: int):
    order = np.argsort(image, kind="stable")
    bounds = np.searchsorted(image[order], np.arange(n_images + 1))
    return order, bounds


def match_lesions(
    gt_image,
    gt_xyxy,
    pred_image,
    pred_xyxy,
    pred_score,
    n_images: int,
    criterion: str = "iou",
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Mark each prediction as a hit (True) or a false positive, image by image.

    Returns:
        ``(P,)`` bool, in the order of the predictions.
    """
    is_tp = np.zeros(len(pred_score), bool)
    g_order, g_bounds = _by_image(np.asarray(gt_image), n_images)
    p_order, p_bounds = _by_image(np.asarray(pred_image), n_images)
    for i in np.flatnonzero((np.diff(g_bounds) > 0) & (np.diff(p_bounds) > 0)):
        g = g_order[g_bounds[i] : g_bounds[i + 1]]
        p = p_order[p_bounds[i] : p_bounds[i + 1]]
        tp, _ = match_detections(gt_xyxy[g], pred_xyxy[p], pred_score[p], criterion, iou_threshold)
        is_tp[p] = tp
    return is_tp


@dataclass
class FrocStats:
    """Per-unit (patient) sufficient statistics of a FROC analysis.

    Operating point ``m`` accepts predictions down to the ``m``-th tie group of scores that
    contains a hit; later groups only add false positives.
    """

    hits: np.ndarray  # (U, M) cumulative hits per unit at each operating point
    fps: np.ndarray  # (U, M) cumulative false positives per unit
    total_fps: np.ndarray  # (U,) false positives when every prediction is accepted
    lesions: np.ndarray  # (U,)
    images: np.ndarray  # (U,)


def froc_stats(score, is_tp, pred_unit, lesions_per_unit, images_per_unit) -> FrocStats:
    """Collect :class:`FrocStats` from scored, matched predictions and per-unit counts."""
    n_units = len(lesions_per_unit)
    order = np.argsort(-np.asarray(score), kind="stable")
    s, tp, unit = np.asarray(score)[order], np.asarray(is_tp)[order], np.asarray(pred_unit)[order]
    group = np.r_[0, np.cumsum(s[1:] != s[:-1])] if len(s) else np.zeros(0, np.int64)
    points = np.unique(group[tp])
    n_pts = len(points)
    seg = np.searchsorted(points, group)  # first operating point that includes the prediction
    flat = unit * (n_pts + 1) + seg
    size = n_units * (n_pts + 1)
    hit_n = np.bincount(flat, weights=tp, minlength=size).reshape(n_units, n_pts + 1)
    fp_n = np.bincount(flat, weights=~tp, minlength=size).reshape(n_units, n_pts + 1)
    return FrocStats(
        hits=np.cumsum(hit_n, axis=1)[:, :n_pts],
        fps=np.cumsum(fp_n, axis=1)[:, :n_pts],
        total_fps=fp_n.sum(1),
        lesions=np.asarray(lesions_per_unit, np.float64),
        images=np.asarray(images_per_unit, np.float64),
    )


def sensitivities(st: FrocStats, weights: np.ndarray, rates=FP_RATES) -> np.ndarray:
    """Sensitivity at each FP rate for each row of unit ``weights`` ``(B, U)`` -> ``(B, R)``.

    Rows drawing no lesion or no image give NaN.
    """
    lesions, images = weights @ st.lesions, weights @ st.images
    # Integer counts: float32 products are exact below 2**24 and twice as fast.
    exact32 = st.total_fps.max(initial=0) * weights.sum(1).max(initial=0) < 2**24
    dtype = np.float32 if exact32 else np.float64
    w = weights.astype(dtype)
    hits = (w @ st.hits.astype(dtype)).astype(np.float64)  # (B, M), non-decreasing along M
    fps = (w @ st.fps.astype(dtype)).astype(np.float64)
    n_b, n_m = fps.shape
    out = np.full((n_b, len(rates)), np.nan)
    ok = (lesions > 0) & (images > 0)
    if n_m == 0:
        out[ok] = 0.0
        return out
    # Operating points within each row's FP budget, for all rows in one searchsorted: rows are
    # shifted apart so that the flattened array stays sorted (counts are exact in float64).
    shift = (np.arange(n_b) * (fps.max() + max(rates) * images.max() + 1.0))[:, None]
    budget = np.asarray(rates, np.float64)[None, :] * images[:, None]
    k = np.searchsorted((fps + shift).ravel(), (budget + shift).ravel(), side="right")
    k = k.reshape(n_b, len(rates)) - np.arange(n_b)[:, None] * n_m
    got = np.where(k > 0, np.take_along_axis(hits, np.maximum(k - 1, 0), axis=1), 0.0)
    out[ok] = (got / np.where(ok, lesions, 1.0)[:, None])[ok]
    return out


def froc_curve(st: FrocStats) -> dict:
    """The FROC staircase (every operating point), for plotting with straight lines."""
    w = np.ones(len(st.lesions))
    lesions, images = float(w @ st.lesions), float(w @ st.images)
    sens = (w @ st.hits) / max(lesions, 1.0)
    fppi = (w @ st.fps) / max(images, 1.0)
    xs, ys = [0.0], [0.0]
    for f, s in zip(fppi.tolist(), sens.tolist(), strict=True):
        xs += [f, f]
        ys += [ys[-1], s]
    xs.append(float(w @ st.total_fps) / max(images, 1.0))
    ys.append(ys[-1])
    return {"fp_per_image": xs, "sensitivity": ys}


def froc_metrics(
    gt,
    preds,
    parts: dict,
    boot,
    criterion: str = "iou",
    iou_threshold: float = 0.5,
    notes: list | None = None,
) -> dict | None:
    """The FROC section: sensitivities, score, bootstrap CI, curve; overall and per part.

    Only annotated images count (lesions, images, predictions); crowd boxes are no lesions.

    Args:
        gt: :class:`~.inputs.GroundTruth`; preds: :class:`~.inputs.Predictions`.
        parts: body part -> ``(I,)`` image mask.
        boot: :class:`~.bootstrap.Bootstrap` (its unit of each image and resample weights).
    """
    notes = notes if notes is not None else Notes()
    ev = gt.annotated
    lesion = ev[gt.box_image] & ~gt.box_crowd
    if not lesion.any():
        notes.append("FROC skipped: the annotated images hold no lesion box")
        return None
    on = ev[preds.image]
    p_image, p_score = preds.image[on], preds.score[on]
    l_image = gt.box_image[lesion]
    is_tp = match_lesions(
        l_image,
        xywh_to_xyxy(gt.box_xywh[lesion]),
        p_image,
        xywh_to_xyxy(preds.xywh[on]),
        p_score,
        len(gt),
        criterion,
        iou_threshold,
    )

    def section(mask, name):
        sel = mask[p_image]
        # only the units (patients) with images in ``mask``: smaller matrices per body part
        units, unit = np.unique(boot.unit_of_image[mask & ev], return_inverse=True)
        local = np.full(len(gt), -1)
        local[mask & ev] = unit
        st = froc_stats(
            p_score[sel],
            is_tp[sel],
            local[p_image[sel]],
            np.bincount(local[l_image[mask[l_image]]], minlength=len(units)),
            np.bincount(unit, minlength=len(units)),
        )
        sens = sensitivities(st, np.ones((1, len(units))))[0]
        out = {
            "fp_per_image": list(FP_RATES),
            "sensitivity": sens.tolist(),
            "score": float(sens.mean()),
        }
        if boot.n_resamples:
            b = sensitivities(st, boot.weights[:, units])
            out["ci95"] = ci95(b.mean(1), f"FROC {name}", notes)
            out["sensitivity_ci95"] = [percentile_ci(b[:, r])[0] for r in range(len(FP_RATES))]
            if out["ci95"] is None:
                del out["ci95"], out["sensitivity_ci95"]
        out.update(
            n_lesions=int(st.lesions.sum()),
            n_images=int(st.images.sum()),
            n_predictions=int(sel.sum()),
            n_hits=int(is_tp[sel].sum()),
        )
        return out, st

    overall, st = section(ev, "overall")
    result = {
        "criterion": criterion,
        "iou_threshold": iou_threshold,
        **overall,
        "curve": froc_curve(st),
        "per_body_part": {},
    }
    for part, mask in parts.items():
        if not lesion[mask[gt.box_image]].any():
            notes.skipped("FROC", part, "no annotated lesion")
            continue
        result["per_body_part"][part] = section(mask & ev, part)[0]
    return result
