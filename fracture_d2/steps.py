"""Workflows made of the project's own tools (the demo, self-training, the supervision benchmark):
each step is the command a user would type, printed as it runs."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the checkout: tools/ and configs/ live there


def train_command(config_file: str, output_dir, opts=()) -> list[str]:
    """``tools/train_net.py`` with ``KEY VALUE`` overrides ``opts`` into ``output_dir``."""
    cmd = ["tools/train_net.py", "--config-file", str(config_file), *map(str, opts)]
    return cmd + ["OUTPUT_DIR", str(output_dir)]


def run_step(name: str, cmd: list, env: dict | None = None, who: str = "fracture_d2") -> float:
    """Print ``name`` and the command, run the tool ``cmd`` (a script path and its arguments)
    with this Python in the checkout, and return its seconds.

    Raises:
        SystemExit: the tool failed (its own output above says why).
    """
    print(f"\n=== {who}: {name}\n$ {shlex.join(['python', *map(str, cmd)])}", flush=True)
    t = time.time()
    if subprocess.run([sys.executable, *map(str, cmd)], cwd=REPO, env=env).returncode != 0:
        raise SystemExit(f"{who}: step '{name}' failed (see above)")
    return time.time() - t


def synthetic_data_steps(folder, name: str, patients: int, seed: int = 0) -> list[tuple]:
    """The two steps that make the synthetic MURA-layout data in ``folder`` and register it
    as ``name`` (``name_train``, ``name_test_all``, ...): ``(step, description, command)``."""
    gen = ["datasets/generate_synthetic_mura.py", "--out", folder, "--patients", patients]
    prep = ["datasets/prepare_mura.py", "--mura-root", f"{folder}/MURA-v1.1", "--boxes"]
    prep += [f"{folder}/boxes.csv", "--out", folder, "--name", name]
    return [
        ("generate", "synthetic MURA-v1.1 tree + box CSV", gen + ["--seed", seed, "--overwrite"]),
        ("prepare", f"COCO splits {name}_{{train,val,test,test_all,...}}", prep),
    ]
