"""DeLong's test against published worked examples; AP50/FROC per bootstrap resample against
the report's own numbers."""

import json

import numpy as np
import pytest

from fracture_d2.evaluation.bootstrap import make_bootstrap
from fracture_d2.evaluation.delong import delong_test, mean_difference_contrast
from fracture_d2.evaluation.inputs import load_ground_truth
from fracture_d2.evaluation.predictions import predictions_from_list
from fracture_d2.evaluation.resampled import ap50_resampled, froc_resampled
from fracture_d2.evaluation.suite import EvalOptions, evaluate_predictions
from fracture_d2.evaluation.synthetic import make_case

# DeLong, DeLong & Clarke-Pearson (Biometrics 44:837-845, 1988): 49 ovarian-cancer patients
# with intestinal obstruction (43 without missing values), three screening tests; the data
# and the result as printed in the SAS/STAT User's Guide, PROC LOGISTIC, example "Comparing
# Receiver Operating Characteristic Curves" (ROCCONTRAST reference 'K-G Score': chi-square
# 2.5340 on 2 DF, Pr > ChiSq 0.2817). Columns: albumin, total protein, K-G score, outcome;
# the example uses 10 - K-G score.
OVARIAN = """
3.0 5.8 10 0  3.2 6.3 5 1  3.9 6.8 3 1  2.8 4.8 6 0  3.2 5.8 3 1  0.9 4.0 5 0  2.5 5.7 8 0
1.6 5.6 5 1  3.8 5.7 5 1  3.7 6.7 6 1  3.2 5.4 4 1  3.8 6.6 6 1  4.1 6.6 5 1  3.6 5.7 5 1
4.3 7.0 4 1  3.6 6.7 4 0  2.3 4.4 6 1  4.2 7.6 4 0  4.0 6.6 6 0  3.5 5.8 6 1  3.8 6.8 7 1
3.0 4.7 8 0  4.5 7.4 5 1  3.7 7.4 5 1  3.1 6.6 6 1  4.1 8.2 6 1  4.3 7.0 5 1  4.3 6.5 4 1
3.2 5.1 5 1  2.6 4.7 6 1  3.3 6.8 6 0  1.7 4.0 7 0  3.7 6.1 5 1  3.3 6.3 7 1  4.2 7.7 6 1
3.5 6.2 5 1  2.9 5.7 9 0  2.1 4.8 7 1  2.8 6.2 8 0  4.0 7.0 7 1  3.3 5.7 6 1  3.7 6.9 5 1
3.6 6.6 5 1
"""


def test_delong_matches_delong_1988_example_as_published_by_sas():
    a = np.array(OVARIAN.split(), float).reshape(-1, 4)
    y, scores = a[:, 3] == 1, [a[:, 0], a[:, 1], 10 - a[:, 2]]
    assert len(y) == 43
    res = delong_test(y, scores, [[1, 0, -1], [0, 1, -1]])  # each test vs the K-G score
    assert res.df == 2
    assert res.statistic == pytest.approx(2.5340, abs=5e-5)
    assert res.p_value == pytest.approx(0.2817, abs=5e-5)


def test_delong_standard_error_matches_hanley_mcneil_data_in_stata_roctab():
    # Hanley & McNeil (Radiology 143:29-36, 1982), Table 1: ratings 1-5 of 58 normal and 51
    # abnormal CT images; Stata's [R] roctab example reports area 0.8932, std. err. 0.0307
    # (DeLong's method, its default).
    y = np.r_[np.zeros(58), np.ones(51)]
    rating = np.r_[
        np.repeat([1, 2, 3, 4, 5], [33, 6, 6, 11, 2]), np.repeat([1, 2, 3, 4, 5], [3, 2, 2, 11, 33])
    ]
    res = delong_test(y, [rating], [[1.0]])
    assert res.auc[0] == pytest.approx(0.8932, abs=5e-5)
    assert res.se[0] == pytest.approx(0.0307, abs=5e-5)


def test_delong_placements_equal_the_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.random(80) < 0.4
    s = np.round(rng.normal(y[None, :] * [[1.0], [0.5], [0.8]], 1.0), 1)  # with ties
    res = delong_test(y, s, mean_difference_contrast(1, 2))
    psi = lambda p, n: (p[:, None] > n[None, :]) + 0.5 * (p[:, None] == n[None, :])  # noqa: E731
    v10 = np.stack([psi(k[y], k[~y]).mean(1) for k in s])
    v01 = np.stack([psi(k[y], k[~y]).mean(0) for k in s])
    cov = np.cov(v10) / y.sum() + np.cov(v01) / (~y).sum()
    assert np.allclose(res.auc, v10.mean(1)) and np.allclose(res.cov, cov)
    assert res.estimate[0] == pytest.approx(res.auc[0] - res.auc[1:].mean())
    same = delong_test(y, [s[0], s[0]])
    assert same.statistic == 0.0 and same.p_value == 1.0


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    coco, preds = make_case(200, dets_per_image=15, seed=1)
    path = tmp_path_factory.mktemp("case") / "case.json"
    path.write_text(json.dumps(coco))
    gt = load_ground_truth(path, "case")
    return coco, preds, gt, predictions_from_list(preds, gt)


def test_resampled_metrics_equal_the_report_and_its_bootstrap(case, tmp_path):
    coco, preds, gt, p = case
    report = evaluate_predictions(gt, p, EvalOptions(bootstrap=300, seed=4))
    assert ap50_resampled(gt, p, np.ones((1, len(gt))))[0] == pytest.approx(
        report["coco"]["overall"]["AP50"], abs=1e-9
    )
    boot = make_bootstrap(gt.patient, len(gt), 300, 4)
    point, resampled = froc_resampled(gt, p, boot)
    assert point == pytest.approx(report["froc"]["score"], abs=1e-12)
    assert np.percentile(resampled, [2.5, 97.5]) == pytest.approx(report["froc"]["ci95"])
    # a patient drawn 0 times is the same as a dataset without that patient's images
    drop = gt.patient == gt.patient[0]
    keep_ids = {int(i) for i in gt.image_ids[~drop]}
    sub = {
        **coco,
        "images": [im for im in coco["images"] if im["id"] in keep_ids],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in keep_ids],
    }
    (tmp_path / "sub.json").write_text(json.dumps(sub))
    gt2 = load_ground_truth(tmp_path / "sub.json")
    p2 = predictions_from_list([q for q in preds if q["image_id"] in keep_ids], gt2)
    expected = evaluate_predictions(gt2, p2, EvalOptions(bootstrap=0))["coco"]["overall"]["AP50"]
    assert ap50_resampled(gt, p, (~drop)[None, :].astype(float))[0] == pytest.approx(expected)
