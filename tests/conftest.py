"""Shared fixtures: small synthetic MURA-layout data made once per session in tmp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_script(
    script: str, *args, env: dict | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run a repo script (``tools/x.py``) by path, as users do, with this interpreter."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory) -> Path:
    """OUT folder with MURA-v1.1/ (24 patients, tiny images) and boxes.csv."""
    from fracture_d2.data.synth_mura import generate_synthetic_mura

    out = tmp_path_factory.mktemp("raw")
    generate_synthetic_mura(out, patients=24, seed=0, valid_fraction=0.25, max_side=128, workers=1)
    return out


@pytest.fixture(scope="session")
def datasets_root(synthetic_raw, tmp_path_factory) -> Path:
    """A $DETECTRON2_DATASETS root with the synthetic data prepared as ``mura_synthetic``."""
    from fracture_d2.data.convert_mura import prepare_mura

    root = tmp_path_factory.mktemp("d2datasets")
    prepare_mura(
        synthetic_raw / "MURA-v1.1",
        [synthetic_raw / "boxes.csv"],
        root / "mura_synthetic",
        name="mura_synthetic",
        val_fraction=0.2,
    )
    return root


SMOKE_CONFIG = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


@pytest.fixture(scope="session")
def smoke_weights(tmp_path_factory) -> Path:
    """A seeded, untrained smoke model's checkpoint: its box scores sit near 0.5, so it always
    predicts boxes, which is what plumbing tests need (detection quality is not tested)."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from fracture_d2.inference import load_cfg

    out = tmp_path_factory.mktemp("smoke_model")
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(load_cfg(SMOKE_CONFIG)), save_dir=str(out)).save("model")
    return out / "model.pth"
