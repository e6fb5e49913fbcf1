"""Run a sweep's training runs: one after another here, or as a SLURM job array via submitit.

Each run is ``tools/train_net.py`` with the run's ``KEY VALUE`` overrides, in a subprocess (the
same command a user types; its output goes to ``OUTPUT_DIR/train_stdout.log``). The callable
submitted to SLURM is :class:`TrainTask`: on every node of a job it starts train_net.py with
Detectron2's ``launch`` arguments (``--num-gpus``, ``--num-machines``, ``--machine-rank``,
``--dist-url``) and, when the job is preempted or times out, requeues itself and resumes from
the last checkpoint (submitit's ``checkpoint`` protocol). A run whose metrics exist is done and
skipped, so an interrupted sweep is resumed by starting it again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .provenance import REPO, now, read_run_info, write_run_info
from .sweep_spec import RunSpec


def is_done(run: RunSpec) -> bool:
    """The run finished and every test set's report exists (TTA ones too, if enabled)."""
    out = Path(run.output_dir)
    if read_run_info(out).get("status") != "finished":
        return False
    folders = ["inference"] + (["inference_TTA"] if run.tta else [])
    return all((out / f / d / "metrics.json").is_file() for f in folders for d in run.test_datasets)


def _distributed_args(num_gpus: int) -> tuple[list[str], int]:
    """train_net.py's launch arguments and this node's rank: one machine here, every node of a
    submitit job there (the first node's host serves the rendezvous)."""
    args = ["--num-gpus", str(max(1, num_gpus))]
    try:
        import submitit

        env = submitit.JobEnvironment()
    except (ImportError, RuntimeError):  # not inside a submitit job
        return args, 0
    if env.num_nodes > 1:
        port = 20000 + int(str(env.job_id).split("_")[0]) % 20000
        args += ["--num-machines", str(env.num_nodes), "--machine-rank", str(env.node)]
        args += ["--dist-url", f"tcp://{env.hostnames[0]}:{port}"]
    return args, env.node


@dataclass
class TrainTask:
    """Train and evaluate one run (picklable: the function submitit sends to the cluster).

    Returns a small summary dict; raises RuntimeError if train_net.py fails.
    """

    run: RunSpec
    num_gpus: int = 1
    sweep_file: str = ""

    def command(self) -> tuple[list[str], int]:
        """The train_net.py command line on this node, and the node's rank."""
        out = Path(self.run.output_dir)
        launch, node = _distributed_args(self.num_gpus)
        cmd = [sys.executable, str(REPO / "tools" / "train_net.py")]
        cmd += ["--config-file", self.run.config_file, *launch]
        if (out / "last_checkpoint").is_file():
            cmd.append("--resume")  # an interrupted run goes on from its last checkpoint
        return cmd + list(self.run.opts), node

    def __call__(self) -> dict:
        out = Path(self.run.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        cmd, node = self.command()
        rank0 = node == 0
        info = {"sweep": self.run.sweep, "sweep_file": self.sweep_file, "config": self.run.config}
        info.update(config_file=self.run.config_file, overrides=self.run.opts, seed=self.run.seed)
        info.update(fold=self.run.fold, test_datasets=self.run.test_datasets, command=cmd)
        if rank0:
            write_run_info(out, {**info, "status": "running", "started": now()})
        path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        t0 = time.time()
        with open(out / "train_stdout.log", "a", encoding="utf-8") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        status = "finished" if rc == 0 else "failed"
        if rank0:
            done = {"status": status, "returncode": rc, "finished": now()}
            done["train_seconds"] = round(time.time() - t0, 1)
            write_run_info(out, done, provenance=False)
        if rc != 0:
            raise RuntimeError(
                f"{self.run.label}: train_net.py exited {rc}; see {out / 'train_stdout.log'}"
            )
        return {"run": self.run.label, "output_dir": str(out), "seconds": time.time() - t0}

    def checkpoint(self, *args, **kwargs):
        """submitit: requeue the same task after a preemption or timeout (it resumes)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(TrainTask(self.run, self.num_gpus, self.sweep_file))
