"""datasets/make_folds.py: patient-grouped, stratified, seeded folds that register as datasets."""

import json
import os
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from fracture_d2.data.folds import assign_folds, make_folds

from conftest import REPO, run_script

NAME = "mura_synthetic"


def test_assign_folds_keeps_patients_together_and_balances_strata():
    rng = np.random.default_rng(3)
    patients = np.repeat(np.arange(60), rng.integers(1, 5, 60)).astype(str)
    part = np.array(["WRIST", "HAND", "ELBOW"])[rng.integers(0, 3, len(patients))]
    label = rng.integers(0, 2, len(patients))
    strata = np.array([f"{p}|{y}" for p, y in zip(part, label, strict=True)])
    fold = assign_folds(patients, strata, 4, seed=0)
    assert set(fold.tolist()) == {0, 1, 2, 3}
    for p in set(patients.tolist()):  # every image of a patient in the same fold
        assert len(set(fold[patients == p].tolist())) == 1
    share = [label[fold == i].mean() for i in range(4)]
    assert max(share) - min(share) < 0.25  # stratified: positives spread over the folds
    assert (assign_folds(patients, strata, 4, seed=0) == fold).all()  # reproducible
    assert (assign_folds(patients, strata, 4, seed=1) != fold).any()  # the seed matters
    with pytest.raises(ValueError, match="between 2 and the number of patients"):
        assign_folds(patients, strata, 61, seed=0)


@pytest.fixture()
def root(datasets_root, tmp_path):
    """A private copy of the prepared synthetic dataset (folds are written into it)."""
    shutil.copytree(datasets_root / NAME, tmp_path / NAME, symlinks=True)
    return tmp_path


def _load(root, stem):
    return json.loads((root / NAME / "annotations" / f"{stem}.json").read_text())


def _registered(root, names):
    code = (
        "import sys; from detectron2.data import MetadataCatalog; "
        "from fracture_d2.data import register_all; register_all(); "
        "print([MetadataCatalog.get(n).json_file for n in sys.argv[1:]])"
    )
    env = {**os.environ, "DETECTRON2_DATASETS": str(root), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code, *names], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout


def test_make_folds_writes_disjoint_patient_folds(root):
    env = {"DETECTRON2_DATASETS": str(root)}
    proc = run_script("datasets/make_folds.py", "--dataset", NAME, "--folds", "3", env=env)
    assert "fold 2:" in proc.stdout
    train = _load(root, f"{NAME}_train")
    all_ids = {im["id"] for im in train["images"]}
    patient_of = {im["id"]: im["patient_id"] for im in train["images"]}
    val_patients = []
    for i in range(3):
        tr, va = _load(root, f"{NAME}_fold{i}_train"), _load(root, f"{NAME}_fold{i}_val")
        tr_ids, va_ids = {im["id"] for im in tr["images"]}, {im["id"] for im in va["images"]}
        assert tr_ids | va_ids == all_ids and not tr_ids & va_ids
        assert {patient_of[j] for j in tr_ids}.isdisjoint({patient_of[j] for j in va_ids})
        assert {a["image_id"] for a in va["annotations"]} <= va_ids
        assert len(tr["annotations"]) + len(va["annotations"]) == len(train["annotations"])
        val_patients.append({patient_of[j] for j in va_ids})
    counts = Counter(p for ps in val_patients for p in ps)
    assert max(counts.values()) == 1  # no patient in two folds
    assert set(counts) == set(patient_of.values())
    summary = json.loads((root / NAME / f"{NAME}_folds.json").read_text())
    assert summary["seed"] == 0 and [f["images"] for f in summary["per_fold"]] == [
        len(_load(root, f"{NAME}_fold{i}_val")["images"]) for i in range(3)
    ]
    files = [f"{NAME}_fold{i}_{p}" for i in range(3) for p in ("train", "val")]
    registered = _registered(root, files)
    assert all(f"{f}.json" in registered for f in files)


def test_make_folds_is_reproducible_and_drops_stale_folds(root):
    make_folds(NAME, 3, seed=0, root=root)
    before = (root / NAME / "annotations" / f"{NAME}_fold1_val.json").read_bytes()
    make_folds(NAME, 3, seed=0, root=root)
    assert (root / NAME / "annotations" / f"{NAME}_fold1_val.json").read_bytes() == before
    make_folds(NAME, 3, seed=5, root=root)
    assert (root / NAME / "annotations" / f"{NAME}_fold1_val.json").read_bytes() != before
    summary = make_folds(NAME, 2, seed=0, root=root)
    assert not (root / NAME / "annotations" / f"{NAME}_fold2_val.json").exists()
    assert summary["removed_stale"] == [f"{NAME}_fold2_train.json", f"{NAME}_fold2_val.json"]


def test_make_folds_bad_input_is_one_line_and_writes_nothing(root):
    env = {"DETECTRON2_DATASETS": str(root)}
    proc = run_script(
        "datasets/make_folds.py", "--dataset", NAME, "--folds", "999", env=env, check=False
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--folds must be between 2 and the number of patients" in lines[0]
    assert not list((root / NAME / "annotations").glob("*fold*"))
    proc = run_script(
        "datasets/make_folds.py", "--dataset", "nope", "--folds", "3", env=env, check=False
    )
    assert proc.returncode == 2 and "nope_train" in proc.stderr.strip().splitlines()[-1]
