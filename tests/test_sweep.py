"""tools/sweep.py: a sweep file checked whole, runs through submitit's local executor (the
functions a SLURM job would run), run_info.json provenance, skipping finished runs."""

import json
import runpy
import shutil

import pytest
import yaml

from fracture_d2.benchmarking.runner import TrainTask
from fracture_d2.benchmarking.sweep_spec import SweepError, load_sweep
from fracture_d2.data.folds import make_folds

from conftest import REPO

NAME = "mura_synthetic"
SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"
TINY = {
    "SOLVER.MAX_ITER": 1,
    "SOLVER.CHECKPOINT_PERIOD": 100,
    "INPUT.MIN_SIZE_TRAIN": [64],
    "INPUT.MIN_SIZE_TEST": 64,
    "FRACTURE.EVAL.BOOTSTRAP": 20,
}


@pytest.fixture()
def root(datasets_root, tmp_path, monkeypatch):
    shutil.copytree(datasets_root / NAME, tmp_path / "data" / NAME, symlinks=True)
    link = tmp_path / "data" / NAME / "MURA-v1.1"  # the prepared folder links the raw images
    if link.is_symlink():
        target = (datasets_root / NAME / "MURA-v1.1").resolve()
        link.unlink()
        link.symlink_to(target)
    make_folds(NAME, 2, seed=0, root=tmp_path / "data")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "data"))
    return tmp_path


def _sweep(root, **changes):
    doc = {
        "name": "tiny",
        "output_dir": str(root / "out"),
        "seeds": [0],
        "folds": {"dataset": NAME, "k": 2, "use": [1]},
        "test_datasets": [f"{NAME}_val"],
        "configs": [{"name": "frcnn", "config_file": SMOKE, "overrides": TINY}],
    }
    doc.update(changes)
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_sweep_runs_with_submitit_local_executor_and_resumes(root, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the submitit job unpickles fracture_d2's task
    sweep_main = runpy.run_path(str(REPO / "tools" / "sweep.py"))["main"]  # the script, in-process
    path = _sweep(root)
    assert sweep_main([str(path), "--launcher", "submitit-local"]) == 0
    assert "1 runs (0 done, 1 to run)" in capsys.readouterr().out
    run = root / "out" / "frcnn" / "fold1_seed0"
    info = json.loads((run / "run_info.json").read_text())
    assert info["status"] == "finished" and (info["config"], info["seed"], info["fold"]) == (
        "frcnn",
        0,
        1,
    )
    assert len(info["git"]["commit"]) == 40 and info["versions"]["torch"]
    assert "DATASETS.TRAIN" in info["overrides"] and f"('{NAME}_fold1_train',)" in info["overrides"]
    assert (run / "inference" / f"{NAME}_val" / "metrics.json").is_file()
    assert list((root / "out" / "submitit").glob("*_result.pkl"))  # ran as a submitit job
    log = (run / "train_stdout.log").read_text()
    assert sweep_main([str(path)]) == 0  # again: nothing left to run
    assert "1 runs (1 done, 0 to run)" in capsys.readouterr().out
    assert (run / "train_stdout.log").read_text() == log


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {
                "configs": [
                    {"name": "x", "config_file": SMOKE, "overrides": {"SOLVER.MAX_ITERS": 1}}
                ]
            },
            "configs (x) fold 1: unknown config key",
        ),
        ({"configs": [{"config_file": "configs/nope.yaml"}]}, "configs/nope.yaml not found"),
        ({"folds": {"dataset": NAME, "k": 3}}, "mura_synthetic_fold2_train is not prepared"),
        ({"seeds": "0"}, "seeds: must be a list"),
        ({"typo": 1}, "unknown keys ['typo']"),
    ],
)
def test_bad_sweep_files_fail_in_one_line_and_write_nothing(root, change, message, capsys):
    path = _sweep(root, **change)
    sweep_main = runpy.run_path(str(REPO / "tools" / "sweep.py"))["main"]  # the script, in-process
    assert sweep_main([str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {path}: ") and message in lines[0]
    assert not (root / "out").exists()


def test_sweep_spec_expands_configs_seeds_folds_and_tasks_requeue(root):
    path = _sweep(
        root,
        seeds=[0, 1],
        folds={"dataset": NAME, "k": 2},
        test_datasets=None,
        configs=[
            {"name": "a", "config_file": SMOKE},
            {"name": "b", "config_file": SMOKE, "overrides": ["MODEL.RPN.NMS_THRESH", 0.6]},
        ],
    )
    header, runs = load_sweep(path)
    assert [(r.config, r.fold, r.seed) for r in runs] == [
        (c, f, s) for c in "ab" for f in (0, 1) for s in (0, 1)
    ]
    assert runs[0].test_datasets == [f"{NAME}_fold0_val"]  # default: the fold's own val set
    assert runs[-1].opts[-4:] == [
        "SEED",
        "1",
        "OUTPUT_DIR",
        str(root / "out" / "b" / "fold1_seed1"),
    ]
    assert "MODEL.RPN.NMS_THRESH" in runs[-1].opts
    task = TrainTask(runs[0])
    again = task.checkpoint()  # submitit requeues the same run after a timeout
    assert again.function.run == runs[0]
    with pytest.raises(SweepError, match="names must be unique"):
        load_sweep(_sweep(root, configs=[{"name": "a", "config_file": SMOKE}] * 2))
