"""tools/compare_runs.py --by-config / --paired on sweep-like run folders (no training)."""

import csv
import json

import pytest
from bench_utils import DATASET, fake_sweep, write_case, write_run

from conftest import run_script


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    ds, preds = write_case(root / "d2" / "mura_synthetic" / "annotations" / f"{DATASET}.json")
    fake_sweep(root / "runs", ds, preds, {"good": 0.05, "bad": 0.7})
    for s in (0, 1, 2):  # "twin": exactly good's predictions, another name
        src = root / "runs" / "good" / f"seed{s}" / "inference" / DATASET
        twin_preds = json.loads((src / "coco_instances_results.json").read_text())
        write_run(root / "runs" / "twin" / f"seed{s}", ds, twin_preds, "twin", s)
    return root


def test_by_config_summary_and_paired_tests(sweep, tmp_path):
    out = tmp_path / "cmp"
    proc = run_script(
        "tools/compare_runs.py",
        sweep / "runs",
        "--paired",
        "good",
        "bad",
        "--out",
        out,
        "--resamples",
        "300",
    )
    assert "Paired tests: `good` (A) vs `bad` (B)" in proc.stdout
    groups = {g["config"]: g for g in json.loads((out / "summary.json").read_text())["groups"]}
    assert set(groups) == {"good", "bad", "twin"} and groups["good"]["runs"] == 3
    per_run = []
    for s in (0, 1, 2):
        rep = sweep / "runs" / "good" / f"seed{s}" / "inference" / DATASET / "metrics.json"
        per_run.append(json.loads(rep.read_text())["coco"]["overall"]["AP50"])
    assert groups["good"]["AP50"]["mean"] == pytest.approx(sum(per_run) / 3, abs=1e-5)
    rows = list(csv.DictReader(open(out / "paired.csv")))
    by = {(r["test_set"], r["metric"]): r for r in rows}
    for key in [(DATASET, "AP50"), (DATASET, "froc"), (DATASET, "image_auroc")]:
        assert float(by[key]["delta"]) > 0 and float(by[key]["p"]) < 0.01, key
        assert float(by[key]["ci95_low"]) > 0
    assert float(by[("per run", "AP50")]["p"]) < 0.05
    assert (out / "metrics.png").stat().st_size > 10_000


def test_identical_predictions_show_no_difference(sweep, tmp_path):
    out = tmp_path / "cmp"
    run_script(
        "tools/compare_runs.py",
        sweep / "runs",
        "--paired",
        "good",
        "twin",
        "--out",
        out,
        "--resamples",
        "200",
    )
    by = {(r["test_set"], r["metric"]): r for r in csv.DictReader(open(out / "paired.csv"))}
    for m in ("AP50", "froc", "image_auroc"):
        assert abs(float(by[(DATASET, m)]["delta"])) < 1e-9 and float(by[(DATASET, m)]["p"]) == 1.0


def test_paired_runs_on_different_test_sets_are_refused(sweep, tmp_path):
    ds, preds = write_case(tmp_path / "other" / "test.json", drop=5)  # same name, 5 images fewer
    write_run(tmp_path / "runs" / "small" / "seed0", ds, preds, "small", 0)
    out = tmp_path / "cmp"
    proc = run_script(
        "tools/compare_runs.py",
        sweep / "runs" / "good",
        tmp_path / "runs",
        "--paired",
        "good",
        "small",
        "--out",
        out,
        check=False,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1
    assert "image_scores.csv" in lines[0] and "same test set" in lines[0]
    assert not out.exists()


def test_leaderboard_mode_still_ranks_single_runs(sweep, tmp_path):
    runs = [sweep / "runs" / c / "seed0" for c in ("good", "bad")]
    proc = run_script("tools/compare_runs.py", *runs, "--sort-by", "AP50", "--out", tmp_path)
    assert proc.stdout.index("| 1 | seed0 | `good`") < proc.stdout.index("| 2 | seed0 | `bad`")
    assert (tmp_path / "leaderboard.csv").is_file()
