"""Known-answer tests of the lesion hit rule shared by FROC and the pictures."""

import numpy as np
import pytest

from fracture_d2.evaluation.matching import box_iou, match_detections


def test_iou_values():
    assert box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10]])[0, 0] == pytest.approx(1.0)
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert box_iou([[0, 0, 10, 10]], [[20, 20, 30, 30]])[0, 0] == 0.0


def test_far_away_box_is_false_positive():
    tp, hit = match_detections([[10, 10, 30, 30]], [[100, 100, 120, 120]], [0.9])
    assert tp.tolist() == [False] and hit.tolist() == [-1]


def test_two_predictions_on_one_lesion_give_one_hit_and_one_fp():
    tp, hit = match_detections([[10, 10, 30, 30]], [[11, 11, 30, 30], [10, 10, 29, 31]], [0.6, 0.8])
    assert tp.tolist() == [False, True] and hit.tolist() == [1]  # the higher score hits


def test_image_without_lesions_gives_only_false_positives():
    tp, hit = match_detections(np.zeros((0, 4)), [[0, 0, 5, 5], [5, 5, 9, 9]], [0.5, 0.4])
    assert tp.tolist() == [False, False] and hit.shape == (0,)


def test_center_criterion_and_lesion_choice():
    gt = [[0, 0, 100, 100], [40, 40, 60, 60]]
    # centre (50, 50) lies in both lesions; it takes the one it overlaps best (the small one)
    tp, hit = match_detections(gt, [[42, 42, 58, 58]], [0.9], criterion="center")
    assert tp.tolist() == [True] and hit.tolist() == [-1, 0]
    # IoU with the big box is low: under the IoU rule it only hits the small one
    tp, hit = match_detections(gt, [[42, 42, 58, 58], [0, 0, 90, 90]], [0.9, 0.8])
    assert tp.tolist() == [True, True] and hit.tolist() == [1, 0]
    with pytest.raises(ValueError):
        match_detections(gt, gt, [1, 1], criterion="dice")


def test_image_and_study_scores():
    from fracture_d2.evaluation.scores import image_score, study_score

    assert image_score([]) == 0.0
    assert image_score([0.2, 0.7]) == pytest.approx(0.7)
    assert image_score([0.5, 0.5], "noisy_or") == pytest.approx(0.75)
    assert study_score([0.2, 0.6], "mean") == pytest.approx(0.4)
    assert study_score([0.2, 0.6]) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        image_score([0.1], "sum")
