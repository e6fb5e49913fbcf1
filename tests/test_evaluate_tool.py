"""tools/evaluate.py end to end on mura_synthetic_test_all (hand-made predictions from the
ground truth), unannotated positives, bad input, datasets without studies, compare_runs, and
the Trainer's evaluator through train_net.py --eval-only."""

import contextlib
import io
import json
import math
import shutil

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fracture_d2.evaluation.inputs import EvaluationError, load_ground_truth
from fracture_d2.evaluation.leaderboard import leaderboard_rows
from fracture_d2.evaluation.predictions import predictions_from_list
from fracture_d2.evaluation.report import write_report
from fracture_d2.evaluation.suite import EvalOptions, evaluate_predictions

from conftest import run_script

DS = "mura_synthetic_test_all"
SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


def _coco(root, name=DS):
    return json.load(open(root / "mura_synthetic" / "annotations" / f"{name}.json"))


def _oracle(coco, drop=0):
    """Every lesion found (score 0.9) except the first ``drop``; one low-score FP per image."""
    preds = [
        {"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
        for a in coco["annotations"][drop:]
    ]
    preds += [
        {"image_id": im["id"], "category_id": 1, "bbox": [1, 1, 6, 6], "score": 0.2}
        for im in coco["images"]
    ]
    return preds


def _no_nan(obj):
    if isinstance(obj, dict):
        return all(_no_nan(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_nan(v) for v in obj)
    return not (isinstance(obj, float) and not math.isfinite(obj))


@pytest.fixture(scope="module")
def evaluated(datasets_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    coco = _coco(datasets_root)
    preds = _oracle(coco, drop=1)
    (tmp / "preds.json").write_text(json.dumps(preds))
    proc = run_script(
        "tools/evaluate.py",
        "--dataset",
        DS,
        "--predictions",
        tmp / "preds.json",
        "--out",
        tmp / "out",
        "--bootstrap",
        200,
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    return tmp, coco, preds, json.load(open(tmp / "out" / "metrics.json")), proc


def test_report_files_and_contract_keys(evaluated):
    tmp, coco, _, m, proc = evaluated
    for f in ("metrics.json", "metrics.csv", "report.md", "image_scores.csv", "study_scores.csv"):
        assert (tmp / "out" / f).is_file(), f
    assert m["dataset"] == DS and m["n_images"] == len(coco["images"])
    assert {"coco", "pr", "froc", "image_level", "study_level"} <= set(m)
    assert {"AP", "AP50", "AP75"} <= set(m["coco"]["overall"]) and m["coco"]["per_body_part"]
    assert len(m["pr"]["recall"]) == len(m["pr"]["precision"]) == 101
    f = m["froc"]
    assert f["fp_per_image"] == [0.125, 0.25, 0.5, 1, 2, 4, 8] and len(f["sensitivity"]) == 7
    assert len(f["ci95"]) == 2 and len(f["curve"]["fp_per_image"]) == len(f["curve"]["sensitivity"])
    il = m["image_level"]
    assert {"auroc", "ci95", "roc", "at_threshold", "youden", "method"} <= set(il)
    assert {"sensitivity", "specificity", "ppv", "npv", "f1"} <= set(il["at_threshold"])
    sl = m["study_level"]
    assert {"kappa", "auroc", "ci95", "roc", "per_body_part"} <= set(sl)
    assert set(sl["ci95"]) == {"kappa", "auroc"}
    assert _no_nan(m) and "nan" not in (tmp / "out" / "metrics.csv").read_text().lower()
    assert "| overall |" in (tmp / "out" / "report.md").read_text()
    assert "froc" in proc.stdout and "wrote" in proc.stdout


def test_known_answers_from_perturbed_ground_truth(evaluated):
    _, coco, _, m, _ = evaluated
    n = len(coco["annotations"])
    # all lesions but one found, ranked above every FP: sensitivity (n-1)/n at every rate
    assert m["froc"]["sensitivity"] == pytest.approx([(n - 1) / n] * 7)
    assert m["froc"]["n_lesions"] == n and m["froc"]["n_hits"] == n - 1
    # one positive image may lose its only box; image/study scores still separate well
    assert m["image_level"]["auroc"] > 0.9 and m["study_level"]["auroc"] > 0.9
    assert m["study_level"]["at_threshold"]["specificity"] == 1.0  # FPs score 0.2 < 0.5


def test_coco_ap_equals_pycocotools(evaluated, datasets_root):
    tmp, coco, _, m, _ = evaluated
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(datasets_root / "mura_synthetic" / "annotations" / f"{DS}.json"))
        ev = COCOeval(gt, gt.loadRes(str(tmp / "preds.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert m["coco"]["overall"]["AP"] == pytest.approx(100 * ev.stats[0], abs=1e-4)
    assert m["coco"]["overall"]["AP50"] == pytest.approx(100 * ev.stats[1], abs=1e-4)


def test_unannotated_positives_count_only_for_image_and_study_level(datasets_root, tmp_path):
    coco = _coco(datasets_root)
    target = next(a["image_id"] for a in coco["annotations"])
    for im in coco["images"]:
        if im["id"] == target:
            im["annotated"] = False  # a positive image whose boxes were never drawn
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != target]
    src = tmp_path / "gt.json"
    src.write_text(json.dumps(coco))
    gt = load_ground_truth(src, "with_unannotated")
    preds = _oracle(coco) + [
        {"image_id": target, "category_id": 1, "bbox": [30, 30, 20, 20], "score": 0.95}
    ]
    m = evaluate_predictions(gt, predictions_from_list(preds, gt), EvalOptions(bootstrap=0))
    assert m["counts"]["predictions_on_unannotated_images"] == 2
    assert m["coco"]["overall"]["AP50"] == pytest.approx(100.0)  # its detections are no FPs
    assert m["froc"]["sensitivity"] == [1.0] * 7
    assert m["image_level"]["n_images"] == len(coco["images"])  # ... but it is scored
    assert "ci95" not in m["image_level"] and "resamples" in m["bootstrap"]
    # COCOeval itself over the annotated images, overall and per body part: the same numbers
    rng = np.random.default_rng(0)
    noisy = predictions_from_list(
        [
            {
                **p,
                "score": float(rng.random()),
                "bbox": list(np.add(p["bbox"], rng.normal(0, 2, 4))),
            }
            for p in preds
        ],
        gt,
    )
    fast = evaluate_predictions(gt, noisy, EvalOptions(bootstrap=0))["coco"]
    slow = evaluate_predictions(gt, noisy, EvalOptions(bootstrap=0, coco_impl="pycocotools"))
    slow = slow["coco"]
    assert 0 < fast["overall"]["AP"] < 100 and set(fast["per_body_part"]) == set(
        slow["per_body_part"]
    )
    for part in ["overall", *fast["per_body_part"]]:
        a = fast[part] if part == "overall" else fast["per_body_part"][part]
        b = slow[part] if part == "overall" else slow["per_body_part"][part]
        assert a == pytest.approx(b, abs=1e-9), part
    # the same inputs give byte-identical report files
    write_report(m, tmp_path / "a")
    write_report(m, tmp_path / "b")
    for f in ("metrics.json", "metrics.csv", "report.md"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_bad_input_gives_one_clear_line(datasets_root, tmp_path):
    gt = load_ground_truth(datasets_root / "mura_synthetic" / "annotations" / f"{DS}.json", DS)
    good = {"image_id": int(gt.image_ids[0]), "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}
    with pytest.raises(EvaluationError, match=r"p\.json: entry 1: image_id 999999 is not in"):
        predictions_from_list([good, {**good, "image_id": 999999}], gt, "p.json")
    with pytest.raises(EvaluationError, match="entry 0: no 'score'"):
        predictions_from_list([{k: v for k, v in good.items() if k != "score"}], gt, "p.json")
    with pytest.raises(EvaluationError, match="no predictions"):
        predictions_from_list([], gt, "p.json")
    with pytest.raises(EvaluationError, match="negative size"):
        predictions_from_list([{**good, "bbox": [0, 0, -1, 5]}], gt, "p.json")
    negatives = _coco(datasets_root)
    negatives["images"] = [im for im in negatives["images"] if im["study_label"] == 0]
    negatives["annotations"] = []
    (tmp_path / "neg.json").write_text(json.dumps(negatives))
    neg = load_ground_truth(tmp_path / "neg.json")
    with pytest.raises(EvaluationError, match="neg.json: dataset neg has no positives"):
        evaluate_predictions(neg, predictions_from_list([good], neg, "p.json"))
    # through the command line: exit 2, one line naming the file
    (tmp_path / "empty.json").write_text("")
    env = {"DETECTRON2_DATASETS": str(datasets_root)}
    proc = run_script(
        "tools/evaluate.py",
        "--dataset",
        DS,
        "--predictions",
        tmp_path / "empty.json",
        "--out",
        tmp_path / "o",
        env=env,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'empty.json'}: is empty; "
        "expected Detectron2's coco_instances_results.json (a JSON list)"
    )
    assert not (tmp_path / "o").exists()
    # never overwrite a training run's metrics.json (one JSON object per line)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text('{"iteration": 1}\n{"iteration": 2}\n')
    with pytest.raises(EvaluationError, match="run/metrics.json: exists and is no evaluation"):
        write_report({"dataset": DS}, tmp_path / "run")


def test_dataset_without_studies_or_patients(tmp_path):
    """FracAtlas-like: body parts, no patient or study: study level skipped with a note."""
    images = [
        {
            "id": i,
            "file_name": f"{i}.jpg",
            "width": 100,
            "height": 100,
            "body_part": ["hand", "leg"][i % 2] if i < 20 else "",  # "": not recorded
        }
        for i in range(1, 21)
    ]
    anns = [
        {
            "id": i,
            "image_id": i,
            "category_id": 1,
            "bbox": [10, 10, 20, 20],
            "area": 400.0,
            "iscrowd": 0,
        }
        for i in range(1, 9)
    ]
    (tmp_path / "fa.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "f"}]})
    )
    gt = load_ground_truth(tmp_path / "fa.json", "fracatlas_test")
    rng = np.random.default_rng(0)
    preds = [
        {
            "image_id": i,
            "category_id": 1,
            "bbox": [10, 10, 20, 20],
            "score": float(rng.uniform(0.3, 1)),
        }
        for i in range(1, 21)
    ]
    m = evaluate_predictions(gt, predictions_from_list(preds, gt), EvalOptions(bootstrap=100))
    assert "study_level" not in m and m["bootstrap"]["unit"] == "image"
    assert any("no study_id" in n for n in m["notes"]) and _no_nan(m)
    assert set(m["coco"]["per_body_part"]) == {"hand", "leg"}  # "unknown" has no box
    assert any("unknown (no annotated box)" in n for n in m["notes"])
    assert m["image_level"]["n_positive"] == 8  # labels from the boxes


def test_compare_runs_leaderboard(evaluated, datasets_root, tmp_path):
    tmp, coco, _, m, _ = evaluated
    worse = tmp_path / "worse"
    (tmp_path / "p.json").write_text(json.dumps(_oracle(coco, drop=len(coco["annotations"]) // 2)))
    run_script(
        "tools/evaluate.py",
        "--dataset",
        DS,
        "--predictions",
        tmp_path / "p.json",
        "--out",
        worse,
        "--bootstrap",
        0,
        "--config-name",
        "worse_cfg",
        env={"DETECTRON2_DATASETS": str(datasets_root)},
    )
    shutil.copytree(tmp / "out", tmp_path / "better")
    proc = run_script("tools/compare_runs.py", worse, tmp_path / "better", "--out", tmp_path / "lb")
    lines = (tmp_path / "lb" / "leaderboard.md").read_text().splitlines()
    rows = [ln for ln in lines if ln.startswith("| 1 ") or ln.startswith("| 2 ")]
    assert "better" in rows[0] and "worse_cfg" in rows[1]  # sorted by FROC, best first
    csv_text = (tmp_path / "lb" / "leaderboard.csv").read_text()
    assert csv_text.startswith("run,config,dataset") and "worse_cfg" in csv_text
    assert "Leaderboard" in proc.stdout
    with pytest.raises(EvaluationError, match="lb: holds no evaluation report"):
        leaderboard_rows([tmp_path / "lb"])


def test_trainer_evaluators_skip_unannotated_images(datasets_root, tmp_path):
    """In process, as the Trainer runs them: COCO AP over annotated images only (a plain
    COCOEvaluator counts detections on positives without boxes as FPs), same AP as ours."""
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
    from detectron2.structures import Boxes, Instances

    from fracture_d2.data.register import register_dataset
    from fracture_d2.evaluation.evaluator import AnnotatedCOCOEvaluator, FractureEvaluator

    coco = _coco(datasets_root)
    target = next(a["image_id"] for a in coco["annotations"])
    next(im for im in coco["images"] if im["id"] == target)["annotated"] = False
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != target]
    (tmp_path / "all.json").write_text(json.dumps(coco))
    name = "evaltest_with_unannotated_all"
    register_dataset(name, tmp_path / "all.json", tmp_path)
    DatasetCatalog.get(name)  # as the test loader does: sets the category id mapping
    preds = _oracle(coco, drop=1) + [
        {"image_id": target, "category_id": 1, "bbox": [30, 30, 20, 20], "score": 0.99}
    ]

    def run(evaluator):
        evaluator.reset()
        for im in coco["images"]:
            p = [x for x in preds if x["image_id"] == im["id"]]
            b = np.array([x["bbox"] for x in p], np.float32).reshape(-1, 4)
            inst = Instances((im["height"], im["width"]))
            inst.pred_boxes = Boxes(torch.tensor(np.c_[b[:, :2], b[:, :2] + b[:, 2:]]))
            inst.scores = torch.tensor([x["score"] for x in p], dtype=torch.float32)
            inst.pred_classes = torch.zeros(len(p), dtype=torch.int64)
            evaluator.process([{"image_id": im["id"]}], [{"instances": inst}])
        return evaluator.evaluate()

    out = tmp_path / "inference"
    coco_ev = AnnotatedCOCOEvaluator(name, tasks=("bbox",), output_dir=None, use_fast_impl=False)
    res = run(DatasetEvaluators([coco_ev, FractureEvaluator(name, out, EvalOptions(bootstrap=20))]))
    report = json.load(open(out / "metrics.json"))
    assert res["bbox"]["AP"] == pytest.approx(report["coco"]["overall"]["AP"], abs=1e-6)
    assert res["fracture"]["froc"] == pytest.approx(report["froc"]["score"], abs=1e-6)
    assert report["counts"]["predictions_on_unannotated_images"] == 2
    plain = run(COCOEvaluator(name, tasks=("bbox",), output_dir=None, use_fast_impl=False))
    assert plain["bbox"]["AP"] < res["bbox"]["AP"]


def test_eval_only_through_train_net(datasets_root, tmp_path):
    """train_net.py --eval-only runs both evaluators (a randomly initialised smoke model on a
    small split: the wiring, not accuracy) and the run shows up in the leaderboard."""
    out, ds = tmp_path / "run", "mura_synthetic_test_XR_FINGER"
    args = [
        "--config-file",
        SMOKE,
        "--eval-only",
        "MODEL.WEIGHTS",
        "",
        "OUTPUT_DIR",
        out,
        "DATASETS.TEST",
        f"('{ds}',)",
        "FRACTURE.EVAL.BOOTSTRAP",
        50,
    ]
    env = {"DETECTRON2_DATASETS": str(datasets_root)}
    proc = run_script("tools/train_net.py", *args, env=env)
    log = proc.stdout + proc.stderr
    assert "copypaste: Task: bbox" in log and "copypaste: Task: fracture" in log
    report = json.load(open(out / "inference" / ds / "metrics.json"))
    assert report["dataset"] == ds and report["bootstrap"]["resamples"] == 50
    assert "image_level" in report and "study_level" in report
    # our AP is COCOEvaluator's (the copypaste line after the bbox header)
    lines = log.splitlines()
    i = next(n for n, ln in enumerate(lines) if "copypaste: AP,AP50,AP75,APs,APm,APl" in ln)
    ap = float(lines[i + 1].split("copypaste: ")[1].split(",")[0])
    assert report["coco"]["overall"].get("AP", 0.0) == pytest.approx(ap, abs=1e-3)
    (row,) = leaderboard_rows([out])  # the config name comes from the run's log.txt
    assert row["config"] == "quick_schedules/faster_rcnn_R_18_FPN_smoke" and row["dataset"] == ds


def test_image_table_fills_metadata_and_must_match(datasets_root, tmp_path):
    ann = datasets_root / "mura_synthetic" / "annotations"
    table = ann / "mura_synthetic_images.csv"
    full = load_ground_truth(ann / f"{DS}.json", DS)
    coco = _coco(datasets_root)
    for im in coco["images"]:  # a bare COCO file: metadata only in the table
        for k in ("body_part", "patient_id", "study_id", "study_label", "image_label"):
            del im[k]
    (tmp_path / "bare.json").write_text(json.dumps(coco))
    bare = load_ground_truth(tmp_path / "bare.json", "bare", table)
    for k in ("body_part", "patient", "study", "study_label", "image_label"):
        assert np.array_equal(getattr(bare, k), getattr(full, k)), k
    assert not any("more images" in n for n in bare.notes)
    coco["images"] = coco["images"][3:]  # images of the split that the dataset lacks: a note
    coco["annotations"] = [
        a for a in coco["annotations"] if a["image_id"] in {im["id"] for im in coco["images"]}
    ]
    (tmp_path / "part.json").write_text(json.dumps(coco))
    part = load_ground_truth(tmp_path / "part.json", "part", table)
    assert any("3 more images of split test" in n for n in part.notes)
    lines = table.read_text().splitlines()
    row = next(n for n, ln in enumerate(lines) if ln.startswith(f"{coco['images'][0]['id']},"))
    cells = lines[row].split(",")
    cells[1] += ".moved"
    lines[row] = ",".join(cells)
    (tmp_path / "other.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(EvaluationError, match=r"other\.csv: image_id \d+ is .* use the table"):
        load_ground_truth(tmp_path / "bare.json", "bare", tmp_path / "other.csv")
