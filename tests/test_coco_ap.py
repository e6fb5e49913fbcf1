"""The numpy COCO AP gives pycocotools' COCOeval numbers, overall and on image subsets."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fracture_d2.evaluation.coco_ap import accumulate, match_coco, pr_curve, summarize

KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _random_case(rng, n_images=40, n_cats=2, crowd=True):
    """Ground truth of mixed sizes and detections near / far from it, with tied scores."""
    images = [{"id": int(i), "width": 400, "height": 400} for i in rng.permutation(n_images) + 5]
    anns, dets = [], []
    for im in images:
        for _ in range(rng.integers(0, 5)):
            w, h = rng.choice([8, 20, 40, 70, 150], 2) * rng.uniform(0.8, 1.2, 2)
            x, y = rng.uniform(0, 200, 2)
            cat = int(rng.integers(1, n_cats + 1))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": im["id"],
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": float(w * h * rng.uniform(0.9, 1.1)),
                    "iscrowd": int(crowd and rng.random() < 0.1),
                }
            )
            if rng.random() < 0.3:  # an overlapping twin: maybe crowd or in another size range
                j = rng.normal(0, 0.1, 4) * [w, h, w, h]
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": im["id"],
                        "category_id": cat,
                        "bbox": [x + j[0], y + j[1], w + j[2], h + j[3]],
                        "area": float(w * h * rng.choice([0.3, 1.0, 3.0])),
                        "iscrowd": int(crowd and rng.random() < 0.3),
                    }
                )
            for _ in range(rng.integers(0, 4)):  # detections around it
                j = rng.normal(0, 0.15, 4) * [w, h, w, h]
                dets.append(
                    {
                        "image_id": im["id"],
                        "category_id": cat,
                        "bbox": [x + j[0], y + j[1], w + j[2], h + j[3]],
                        "score": float(np.round(rng.random(), 1)),
                    }
                )
        for _ in range(rng.integers(0, 8 if im["id"] % 7 else 130)):  # background boxes
            w, h = rng.uniform(5, 120, 2)
            dets.append(
                {
                    "image_id": im["id"],
                    "category_id": int(rng.integers(1, n_cats + 1)),
                    "bbox": [*rng.uniform(0, 300, 2), w, h],
                    "score": float(np.round(rng.random(), 2)),
                }
            )
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def _pycocotools(gt_dict, dets, img_ids):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: (v * 100 if v >= 0 else None) for k, v in zip(KEYS, ev.stats[:6], strict=True)}, ev


def _ours(gt_dict, dets):
    ids = np.array([im["id"] for im in gt_dict["images"]])
    index = {int(i): n for n, i in enumerate(ids)}
    anns = gt_dict["annotations"]
    m = match_coco(
        np.array([index[a["image_id"]] for a in anns], np.int64),
        np.array([a["bbox"] for a in anns], float).reshape(-1, 4),
        np.array([a["category_id"] for a in anns], np.int64),
        np.array([a["area"] for a in anns], float),
        np.array([bool(a["iscrowd"]) for a in anns]),
        np.array([index[d["image_id"]] for d in dets], np.int64),
        np.array([d["bbox"] for d in dets], float).reshape(-1, 4),
        np.array([d["score"] for d in dets], float),
        np.array([d["category_id"] for d in dets], np.int64),
        ids,
    )
    return m, ids


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_pycocotools_overall_and_on_subsets(seed):
    rng = np.random.default_rng(seed)
    gt_dict, dets = _random_case(rng, n_cats=1 + seed % 2, crowd=seed != 3)
    m, ids = _ours(gt_dict, dets)
    for subset in (np.ones(len(ids), bool), rng.random(len(ids)) < 0.4):
        expected, ev = _pycocotools(gt_dict, dets, ids[subset].tolist())
        precision = accumulate(m, subset)
        got = summarize(precision)
        for k in KEYS:
            if expected[k] is None:
                assert got[k] is None, k
            else:
                assert got[k] == pytest.approx(expected[k], abs=1e-9), k
        # the full precision array, not only its means
        ref = ev.eval["precision"][:, :, :, :, 2]
        np.testing.assert_allclose(precision[:, :, : ref.shape[2]], ref, atol=1e-12)


def test_pr_curve_and_undefined_ranges():
    gt = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1, "name": "f"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 10, 50, 50],
                "area": 2500.0,
                "iscrowd": 0,
            }
        ],
    }
    dets = [
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9},  # FP first
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.8},
    ]
    m, _ = _ours(gt, dets)
    precision = accumulate(m)
    got = summarize(precision)
    assert got["AP"] == pytest.approx(50.0) and got["APm"] == pytest.approx(50.0)
    assert got["APs"] is None and got["APl"] is None  # no ground truth of that size
    curve = pr_curve(precision)
    assert len(curve["recall"]) == 101 and curve["precision"][0] == pytest.approx(0.5)
    assert got == {
        k: v for k, v in zip(KEYS, _pycocotools(gt, dets, [1, 2])[0].values(), strict=True)
    }


def test_equal_iou_goes_to_the_later_box_as_in_pycocotools():
    # D1 overlaps A and B equally; COCOeval gives it B (the later one), so D2 can take A at IoU 1
    gt = {
        "images": [{"id": 1}],
        "categories": [{"id": 1, "name": "f"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 100.0, "iscrowd": 0}
            for i, b in enumerate([[0, 0, 10, 10], [1, 0, 10, 10]])
        ],
    }
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0.5, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},
    ]
    m, _ = _ours(gt, dets)
    got = summarize(accumulate(m))
    expected = _pycocotools(gt, dets, [1])[0]
    # IoU 0.5..0.9: both hit; 0.95: only D2 (precision 0.5 up to recall 0.5, 51 of 101 points)
    assert got["AP"] == pytest.approx(expected["AP"])
    assert got["AP"] == pytest.approx(100 * (9 + 51 * 0.5 / 101) / 10)
