"""What produced a run: the code (git commit, uncommitted changes), the package versions and the
machine, recorded in ``OUTPUT_DIR/run_info.json`` next to Detectron2's ``config.yaml``."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from ..utils_io import write_json_atomic

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "torch",
    "torchvision",
    ("detectron2", "sal-detectron2"),
    "numpy",
    "scipy",
    "scikit-learn",
    "pycocotools",
    "albumentations",
    "submitit",
    "ensemble-boxes",
)


def git_state(repo=REPO) -> dict:
    """``{"commit", "dirty"}`` of the checkout holding the code; nulls outside a git checkout."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30
        )

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions() -> dict:
    """Installed versions of the packages a result depends on (None if not installed)."""
    from fracture_d2 import __version__

    out = {"python": platform.python_version(), "fracture_d2": __version__}
    for names in PACKAGES:
        names = (names,) if isinstance(names, str) else names
        version = None
        for name in names:
            try:
                version = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
        out[names[0]] = version
    return out


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_run_info(output_dir) -> dict:
    """The run's ``run_info.json``; {} if absent or unreadable."""
    try:
        return json.loads((Path(output_dir) / "run_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_run_info(output_dir, info: dict, provenance: bool = True) -> dict:
    """Merge ``info`` into the run's ``run_info.json`` (atomically); with ``provenance`` (when
    a run starts: the code that runs is the code of that moment) also the git commit, package
    versions and machine. Returns the whole record."""
    record = read_run_info(output_dir)
    record.update(info)
    if provenance:
        record.update(
            git=git_state(),
            versions=package_versions(),
            host=socket.gethostname(),
            slurm_job_id=os.environ.get("SLURM_JOB_ID"),
            python_executable=sys.executable,
        )
    write_json_atomic(Path(output_dir) / "run_info.json", record, indent=1)
    return record
