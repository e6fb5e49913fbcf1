"""Image/study-level metrics agree with scikit-learn on random inputs (ties, weights), and the
bootstrap is seeded, covers the point estimate and drops undefined resamples."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, confusion_matrix, roc_auc_score, roc_curve

from fracture_d2.evaluation import classification as C
from fracture_d2.evaluation.bootstrap import make_bootstrap, percentile_ci
from fracture_d2.evaluation.levels import binary_metrics
from fracture_d2.evaluation.notes import Notes


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_with_ties_and_weights(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.random(n) < rng.uniform(0.1, 0.9)
    y[:2] = [True, False]
    s = np.round(rng.random(n), int(rng.integers(1, 4)))  # many ties
    assert C.auroc(y, s)[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    w = rng.integers(0, 4, (3, n)).astype(float)
    w[:, :2] = 1
    got = C.auroc(y, s, w)
    for b in range(3):
        assert got[b] == pytest.approx(roc_auc_score(y, s, sample_weight=w[b]), abs=1e-12)


def test_auroc_undefined_is_nan_not_a_number():
    assert np.isnan(C.auroc([1, 1, 1], [0.1, 0.2, 0.3])[0])
    assert np.isnan(C.auroc([], [])[0])


@pytest.mark.parametrize("seed", range(5))
def test_kappa_and_rates_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 400))
    y = rng.random(n) < 0.4
    s = rng.random(n)
    t = float(rng.uniform(0.2, 0.8))
    pred = s >= t
    counts = C.confusion_by_unit(y, s, t, np.zeros(n, int), 1)[0]
    assert C.cohen_kappa(counts) == pytest.approx(cohen_kappa_score(y, pred), abs=1e-12)
    w = rng.integers(0, 3, n).astype(float)
    unit = np.arange(n)
    wc = w @ C.confusion_by_unit(y, s, t, unit, n)
    assert C.cohen_kappa(wc) == pytest.approx(cohen_kappa_score(y, pred, sample_weight=w))
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    r = C.rates(counts)
    assert r["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert r["specificity"] == pytest.approx(tn / (tn + fp))
    assert r["ppv"] == pytest.approx(tp / (tp + fp))
    assert r["npv"] == pytest.approx(tn / (tn + fn))
    assert r["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_kappa_undefined_when_everything_is_constant():
    assert np.isnan(C.cohen_kappa(np.array([0.0, 0.0, 5.0, 0.0])))  # all negative, all right
    assert C.cohen_kappa(np.array([0.0, 5.0, 0.0, 0.0])) == 0.0  # all wrong: kappa 0


def test_roc_curve_matches_sklearn_and_youden():
    rng = np.random.default_rng(3)
    y = rng.random(200) < 0.3
    s = np.round(rng.random(200), 2)
    fpr, tpr, thr = C.roc_curve(y, s)
    sf, st, sthr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sf)
    np.testing.assert_allclose(tpr, st)
    np.testing.assert_allclose(thr[1:], sthr[1:])
    assert np.isfinite(thr).all() and thr[0] > s.max()
    t = C.youden_threshold(y, s)
    best = max(((s >= u)[y].mean() - (s >= u)[~y].mean(), u) for u in np.unique(s))
    assert (s >= t)[y].mean() - (s >= t)[~y].mean() == pytest.approx(best[0])


def test_bootstrap_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(0)
    patients = rng.integers(0, 60, 300).astype(str)
    y = rng.random(300) < 0.4
    s = np.where(y, rng.beta(3, 2, 300), rng.beta(2, 3, 300))
    a = make_bootstrap(patients, 300, 500, seed=7)
    b = make_bootstrap(patients, 300, 500, seed=7)
    assert np.array_equal(a.weights, b.weights)
    assert (a.weights.sum(1) == a.n_units).all()  # each resample draws n_units patients
    notes = Notes()
    m = binary_metrics(y, s, a.unit_of_image, a, 0.5, "image", notes, kappa=True)
    lo, hi = m["ci95"]["auroc"]
    assert lo < m["auroc"] < hi and hi - lo < 0.3
    lo, hi = m["ci95"]["kappa"]
    assert lo < m["kappa"] < hi
    c = make_bootstrap(patients, 300, 500, seed=8)
    m2 = binary_metrics(y, s, c.unit_of_image, c, 0.5, "image", Notes(), kappa=True)
    assert m2["ci95"]["auroc"] != m["ci95"]["auroc"]


def test_undefined_resamples_are_dropped_and_counted():
    y = np.array([1, 0, 0, 0, 0, 0], bool)  # one positive patient of six
    s = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    boot = make_bootstrap(np.arange(6).astype(str), 6, 400, seed=0)
    notes = Notes()
    m = binary_metrics(y, s, boot.unit_of_image, boot, 0.5, "image", notes)
    assert m["ci95"]["auroc"] == [1.0, 1.0]
    rendered = " ".join(notes.render())
    assert "image" in rendered and "of 400" in rendered
    assert percentile_ci(np.array([np.nan, np.nan])) == (None, 0)
