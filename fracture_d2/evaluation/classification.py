"""Binary classification metrics for image- and study-level scores.

Written for many bootstrap resamples at once: AUROC takes a ``(B, N)`` weight matrix (how
often each sample is drawn), and the threshold metrics and Cohen's kappa take confusion
counts of any leading shape. Undefined values (no positives, a constant rater) are NaN here;
callers report them as absent, never as NaN.
"""

from __future__ import annotations

import numpy as np

RATE_NAMES = ("sensitivity", "specificity", "ppv", "npv", "f1", "accuracy")


def roc_curve(y, s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points for every distinct score (a sample is positive if ``score >= threshold``).

    Like ``sklearn.metrics.roc_curve(drop_intermediate=False)``, except that the first
    threshold, which accepts nothing, is the next float above the highest score, not inf.
    """
    y, s = np.asarray(y, bool), np.asarray(s, np.float64)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    ends = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1] if len(s) else np.zeros(0, int)
    tps, fps = np.cumsum(y)[ends], np.cumsum(~y)[ends]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    top = np.nextafter(s[0], np.inf) if len(s) else 1.0
    return (
        np.r_[0.0, fps / n_neg],
        np.r_[0.0, tps / n_pos],
        np.r_[top, s[ends]],
    )


def auroc(y, s, weights: np.ndarray | None = None) -> np.ndarray:
    """Area under the ROC curve (ties count one half), for each row of ``weights``.

    Args:
        y: ``(N,)`` 0/1 labels.
        s: ``(N,)`` scores.
        weights: ``(B, N)`` sample weights (bootstrap counts); None = one row of ones.

    Returns:
        ``(B,)`` AUROC; NaN where a row has no positive or no negative weight.
    """
    y, s = np.asarray(y, bool), np.asarray(s, np.float64)
    w = np.ones((1, len(s))) if weights is None else np.asarray(weights, np.float64)
    if len(s) == 0:
        return np.full(len(w), np.nan)
    order = np.argsort(s, kind="stable")
    s, y, w = s[order], y[order], w[:, order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    pos = np.add.reduceat(w * y, starts, axis=1)  # weight of positives per tied score
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(1)
    den = pos.sum(1) * neg.sum(1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def confusion_by_unit(y, s, threshold: float, unit, n_units: int) -> np.ndarray:
    """Counts ``[tp, fp, tn, fn]`` per unit at ``score >= threshold`` -> ``(U, 4)``."""
    y, pred = np.asarray(y, bool), np.asarray(s, np.float64) >= threshold
    cells = np.stack([y & pred, ~y & pred, ~y & ~pred, y & ~pred], axis=1).astype(np.float64)
    out = np.zeros((n_units, 4))
    np.add.at(out, np.asarray(unit), cells)
    return out


def _div(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def rates(counts: np.ndarray) -> dict:
    """Sensitivity, specificity, PPV, NPV, F1, accuracy from ``[..., 4]`` confusion counts."""
    tp, fp, tn, fn = np.moveaxis(np.asarray(counts, np.float64), -1, 0)
    return {
        "sensitivity": _div(tp, tp + fn),
        "specificity": _div(tn, tn + fp),
        "ppv": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "accuracy": _div(tp + tn, tp + fp + tn + fn),
    }


def cohen_kappa(counts: np.ndarray) -> np.ndarray:
    """Cohen's kappa of prediction vs label from ``[..., 4]`` counts ``[tp, fp, tn, fn]``.

    NaN where undefined (no samples, or chance agreement 1: both raters constant alike).
    """
    tp, fp, tn, fn = np.moveaxis(np.asarray(counts, np.float64), -1, 0)
    n = tp + fp + tn + fn
    n_safe = np.where(n > 0, n, 1.0)
    po = (tp + tn) / n_safe
    pe = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / n_safe**2
    ok = (n > 0) & (pe < 1.0)
    return np.where(ok, (po - pe) / np.where(ok, 1.0 - pe, 1.0), np.nan)


def youden_threshold(y, s) -> float:
    """The score threshold maximising sensitivity + specificity - 1 (the highest if tied)."""
    fpr, tpr, thr = roc_curve(y, s)
    return float(thr[int(np.argmax(tpr - fpr))])
