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
