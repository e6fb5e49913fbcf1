"""FROC known answers: hand-built cases, operating points with tied scores, the bootstrap path
agreeing with a direct resampling, and per-body-part sections."""

import numpy as np
import pytest

from fracture_d2.evaluation.bootstrap import make_bootstrap
from fracture_d2.evaluation.froc import (
    FP_RATES,
    froc_curve,
    froc_metrics,
    froc_stats,
    match_lesions,
    sensitivities,
)
from fracture_d2.evaluation.inputs import GroundTruth, Predictions


def _gt(n_images, boxes, parts=None, patients=None, annotated=None):
    """boxes: list of (image index, [x0, y0, x1, y1])."""
    img = np.array([b[0] for b in boxes], np.int64)
    xyxy = np.array([b[1] for b in boxes], float).reshape(-1, 4)
    xywh = np.c_[xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]]
    return GroundTruth(
        name="toy",
        source="toy.json",
        image_ids=np.arange(1, n_images + 1),
        annotated=np.ones(n_images, bool) if annotated is None else np.array(annotated),
        image_label=np.isin(np.arange(n_images), img).astype(int),
        body_part=None if parts is None else np.array(parts, object),
        patient=None if patients is None else np.array(patients, object),
        study=None,
        study_label=None,
        categories={1: "fracture"},
        box_image=img,
        box_xywh=xywh,
        box_category=np.ones(len(img), np.int64),
        box_area=xywh[:, 2] * xywh[:, 3],
        box_crowd=np.zeros(len(img), bool),
    )


def _preds(preds):
    """preds: list of (image index, [x0, y0, x1, y1], score)."""
    xyxy = np.array([p[1] for p in preds], float).reshape(-1, 4)
    return Predictions(
        "toy_preds.json",
        np.array([p[0] for p in preds], np.int64),
        np.c_[xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]],
        np.array([p[2] for p in preds], float),
        np.ones(len(preds), np.int64),
    )


def _froc(gt, preds, n_boot=0, **kw):
    parts = {} if gt.body_part is None else {p: gt.body_part == p for p in set(gt.body_part)}
    return froc_metrics(gt, preds, parts, make_bootstrap(gt.patient, len(gt), n_boot), **kw)


LESION = [10, 10, 30, 30]


def test_hand_built_case():
    # 4 images, 2 lesions (images 0 and 1); image 2 and 3 have no lesion
    gt = _gt(4, [(0, LESION), (1, LESION)])
    preds = _preds(
        [
            (0, [11, 11, 30, 30], 0.9),  # hit lesion 0
            (0, [10, 10, 29, 31], 0.8),  # second prediction on lesion 0: FP
            (1, [100, 100, 120, 120], 0.7),  # far away: FP (lesion 1 missed)
            (2, [10, 10, 30, 30], 0.6),  # image without lesions: FP
            (3, [0, 0, 5, 5], 0.5),  # FP
            (1, [10, 10, 30, 30], 0.4),  # hits lesion 1, after 4 FPs
        ]
    )
    r = _froc(gt, preds)
    # accept 0.9: 1 hit, 0 FP; ... accept 0.4: 2 hits, 4 FPs = 1 FP/image
    assert r["sensitivity"] == [0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert r["score"] == pytest.approx((3 * 0.5 + 4 * 1.0) / 7)
    assert (r["n_lesions"], r["n_images"], r["n_predictions"], r["n_hits"]) == (2, 4, 6, 2)
    # the staircase: (0,0) -> hit at 0 FP -> 0.5 until 1 FP/image -> 1.0
    assert r["curve"]["fp_per_image"] == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert r["curve"]["sensitivity"] == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]


def test_far_box_double_hit_and_lesion_free_image():
    gt = _gt(2, [(0, LESION)])
    is_tp = match_lesions(
        gt.box_image,
        np.array([LESION], float),
        np.array([0, 0, 0, 1]),
        np.array([[11, 11, 30, 30], [10, 10, 29, 31], [200, 200, 220, 220], [10, 10, 30, 30]]),
        np.array([0.9, 0.8, 0.95, 0.99]),
        2,
    )
    # one hit; the second on the same lesion, the far box and the lesion-free image are FPs
    assert is_tp.tolist() == [True, False, False, False]


def test_center_criterion_counts_a_loose_box():
    gt = _gt(1, [(0, LESION)])
    loose = _preds([(0, [0, 0, 60, 60], 0.9)])  # IoU 400/3600 but centre (30, 30) inside
    assert _froc(gt, loose)["n_hits"] == 0
    assert _froc(gt, loose, criterion="center")["n_hits"] == 1


def test_tied_scores_enter_together():
    # a hit and a FP with the same score: the operating point takes both (1 FP per 1 image)
    gt = _gt(1, [(0, LESION)])
    r = _froc(gt, _preds([(0, LESION, 0.5), (0, [50, 50, 60, 60], 0.5)]))
    assert r["sensitivity"] == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def test_no_predictions_and_unannotated_images():
    gt = _gt(3, [(0, LESION), (2, LESION)], annotated=[True, True, False])
    r = _froc(gt, _preds([(2, LESION, 0.9), (1, [0, 0, 5, 5], 0.8)]))
    # image 2 is not annotated: its lesion and prediction do not count
    assert (r["n_lesions"], r["n_images"], r["n_predictions"]) == (1, 2, 1)
    assert r["sensitivity"] == [0.0] * 7
    empty = _froc(gt, _preds([]))
    assert empty["sensitivity"] == [0.0] * 7 and empty["n_predictions"] == 0


def test_bootstrap_weights_equal_resampled_data():
    """Weighted sufficient statistics == recomputing on an explicitly resampled dataset."""
    rng = np.random.default_rng(0)
    n_units = 12
    unit_of_image = rng.integers(0, n_units, 40)
    score = np.round(rng.random(300), 2)  # ties on purpose
    image = rng.integers(0, 40, 300)
    is_tp = rng.random(300) < 0.15
    lesions = np.bincount(unit_of_image[image[is_tp]], minlength=n_units) + rng.integers(
        0, 2, n_units
    )
    images = np.bincount(unit_of_image, minlength=n_units)
    st = froc_stats(score, is_tp, unit_of_image[image], lesions, images)
    draws = rng.integers(0, n_units, (5, n_units))
    weights = np.stack([np.bincount(d, minlength=n_units) for d in draws]).astype(float)
    fast = sensitivities(st, weights)
    for b, d in enumerate(draws):
        # explicit copies of each drawn unit's predictions, with new unit ids
        sc, tp, un = [], [], []
        for copy, u in enumerate(d):
            sel = unit_of_image[image] == u
            sc.append(score[sel]), tp.append(is_tp[sel]), un.append(np.full(sel.sum(), copy))
        st_b = froc_stats(
            np.concatenate(sc), np.concatenate(tp), np.concatenate(un), lesions[d], images[d]
        )
        np.testing.assert_allclose(fast[b], sensitivities(st_b, np.ones((1, n_units)))[0])


def test_step_rule_against_brute_force():
    rng = np.random.default_rng(1)
    score = np.round(rng.random(200), 2)
    is_tp = rng.random(200) < 0.2
    st = froc_stats(score, is_tp, np.zeros(200, int), [is_tp.sum() + 3], [25])
    got = sensitivities(st, np.ones((1, 1)))[0]
    for f, s in zip(FP_RATES, got, strict=True):
        best = 0.0
        for t in np.unique(score):  # every threshold: accept score >= t
            acc = score >= t
            if (acc & ~is_tp).sum() <= f * 25:
                best = max(best, (acc & is_tp).sum() / (is_tp.sum() + 3))
        assert s == pytest.approx(best)
    curve = froc_curve(st)
    assert curve["sensitivity"][-1] == pytest.approx(is_tp.sum() / (is_tp.sum() + 3))
    assert curve["fp_per_image"][-1] == pytest.approx((~is_tp).sum() / 25)


def test_per_body_part_and_ci():
    boxes = [(i, LESION) for i in range(0, 20, 2)]
    parts = ["XR_HAND"] * 10 + ["XR_WRIST"] * 10
    gt = _gt(20, boxes, parts=parts, patients=[i // 2 for i in range(20)])
    preds = _preds(
        [(i, LESION, 0.9) for i in range(0, 10, 2)] + [(i, [0, 0, 5, 5], 0.3) for i in range(20)]
    )
    r = _froc(gt, preds, n_boot=200)
    assert r["per_body_part"]["XR_HAND"]["sensitivity"] == [1.0] * 7
    assert r["per_body_part"]["XR_WRIST"]["sensitivity"] == [0.0] * 7
    assert r["sensitivity"] == [0.5] * 7
    lo, hi = r["ci95"]
    assert 0.0 < lo < 0.5 < hi < 1.0  # patients hold 1 lesion each, hand ones are all hit
