"""DeLong's test for correlated AUROCs: several scores of the same cases, compared by contrasts.

Hand-written (about 40 lines) because no maintained library fits: scipy, statsmodels and
scikit-learn have no DeLong test, and the small PyPI packages that do (MLstatkit, pystatsbio,
rocauc-comparison) compare exactly two curves, whereas a benchmark compares the *mean* AUROC
of several runs per config, i.e. a general contrast ``L @ theta`` of many correlated AUROCs,
which is DeLong et al.'s own formulation (Biometrics 44:837-845, 1988, section 3). The
placement values (structural components) use the midrank algorithm of Sun & Xu (IEEE Signal
Processing Letters 21:1389-1393, 2014): ``O(n log n)`` per curve instead of all case pairs.

Checked in tests/test_paired.py against two published worked examples: DeLong et al.'s
ovarian-cancer data as printed with SAS/STAT's PROC LOGISTIC ROCCONTRAST example, and
Hanley & McNeil's (1982) rating data with Stata's ``roctab`` standard error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def _placements(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Structural components ``V10`` (per positive) and ``V01`` (per negative) of each row of
    ``scores`` ``(K, N)``: the share of the other class it outranks (ties count one half)."""
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    v10, v01 = np.empty((len(scores), m)), np.empty((len(scores), n))
    for k in range(len(scores)):
        both = stats.rankdata(np.r_[pos[k], neg[k]])  # midranks over all cases
        r_pos, r_neg = stats.rankdata(pos[k]), stats.rankdata(neg[k])
        v10[k] = (both[:m] - r_pos) / n  # negatives below each positive (ties: half)
        v01[k] = 1.0 - (both[m:] - r_neg) / m  # positives above each negative
    return v10, v01


@dataclass
class DeLongResult:
    """AUROCs, their covariance, and the test of ``contrast @ auc == 0``."""

    auc: np.ndarray  # (K,)
    cov: np.ndarray  # (K, K)
    estimate: np.ndarray  # (R,) contrast @ auc
    se: np.ndarray  # (R,) standard error of each contrast row
    statistic: float  # z (one row) or chi-square (several rows)
    df: int
    p_value: float


def delong_test(y, scores, contrast=None) -> DeLongResult:
    """DeLong's test of ``contrast @ AUROC == 0`` for scores of the same cases.

    Args:
        y: ``(N,)`` 0/1 labels.
        scores: ``(K, N)`` scores, one row per curve (higher means more likely positive).
        contrast: ``(R, K)`` contrast rows; default: the first curve minus the second.

    Returns:
        :class:`DeLongResult`; with one row the statistic is z (two-sided p), with several
        it is ``chi2 = d' (L S L')^-1 d`` on ``rank(L)`` degrees of freedom.

    Raises:
        ValueError: no positive or no negative case.
    """
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    if y.all() or not y.any():
        raise ValueError("DeLong's test needs positive and negative cases")
    L = np.atleast_2d(np.asarray([[1.0, -1.0]] if contrast is None else contrast, np.float64))
    v10, v01 = _placements(y, scores)
    auc = v10.mean(1)
    cov = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    d, s = L @ auc, L @ cov @ L.T
    se = np.sqrt(np.clip(np.diag(s), 0.0, None))
    if len(L) == 1:
        if abs(d[0]) <= 1e-12:  # identical curves: d and se of rounding size, no difference
            z = 0.0
        else:
            z = float(d[0] / se[0]) if se[0] > 0 else float(np.copysign(np.inf, d[0]))
        return DeLongResult(auc, cov, d, se, z, 1, float(2 * stats.norm.sf(abs(z))))
    df = int(np.linalg.matrix_rank(s))
    chi2 = float(d @ np.linalg.pinv(s) @ d)
    return DeLongResult(auc, cov, d, se, chi2, df, float(stats.chi2.sf(chi2, df)))


def mean_difference_contrast(n_a: int, n_b: int) -> np.ndarray:
    """The contrast ``mean(A's AUROCs) - mean(B's AUROCs)`` over ``n_a + n_b`` curves."""
    return np.r_[np.full(n_a, 1.0 / n_a), np.full(n_b, -1.0 / n_b)][None, :]
