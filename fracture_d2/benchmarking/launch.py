"""Launch a sweep's pending runs: here, one after another, or through submitit (a SLURM job
array, or submitit's local executor, which runs the same pickled tasks in child processes)."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass

from tqdm import tqdm

from .runner import TrainTask, is_done
from .sweep_spec import RunSpec

logger = logging.getLogger("fracture_d2")


@dataclass
class ClusterOptions:
    """What each SLURM job asks for (submitit's AutoExecutor parameters)."""

    partition: str | None = None
    nodes: int = 1
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    timeout_min: int = 24 * 60
    mem_gb: float | None = None
    array_parallelism: int = 64

    def parameters(self, name: str) -> dict:
        p = {
            "name": name,
            "nodes": self.nodes,
            "gpus_per_node": self.gpus_per_node,
            "tasks_per_node": 1,  # one train_net.py per node; Detectron2's launch spawns GPUs
            "cpus_per_task": self.cpus_per_task,
            "timeout_min": self.timeout_min,
            "slurm_array_parallelism": self.array_parallelism,
        }
        if self.partition:
            p["slurm_partition"] = self.partition
        if self.mem_gb:
            p["mem_gb"] = self.mem_gb
        return p


def pending(runs: list[RunSpec]) -> tuple[list[RunSpec], list[RunSpec]]:
    """``(to run, already done)``: a run is done when its metrics exist."""
    done = [r for r in runs if is_done(r)]
    return [r for r in runs if r not in done], done


def run_here(tasks: list[TrainTask], keep_going: bool = False) -> list[str]:
    """Run the tasks one after another in this process's machine; returns the failures."""
    failures = []
    bar = tqdm(tasks, desc="sweep", unit="run")
    for task in bar:
        bar.set_postfix_str(task.run.label)
        try:
            task()
        except RuntimeError as e:
            failures.append(str(e))
            tqdm.write(f"error: {e}")
            if not keep_going:
                break
    return failures


def submit(
    tasks: list[TrainTask], folder, cluster: str, options: ClusterOptions, wait: bool, name: str
) -> list[str]:
    """Submit the tasks with submitit; returns the failures (only known when ``wait``).

    ``cluster`` ``"slurm"`` submits one job array; ``"local"`` (submitit's local executor)
    runs them one at a time in child processes, exactly as a cluster node would.
    """
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    executor.update_parameters(**options.parameters(name))
    if cluster == "local":  # the local executor would start an array all at once
        jobs = []
        for task in tqdm(tasks, desc="submitit local", unit="run"):
            jobs.append(executor.submit(task))
            jobs[-1].wait()
    else:
        try:
            jobs = executor.submit_array(tasks)
        except (OSError, subprocess.SubprocessError) as e:  # no sbatch, or sbatch refused
            raise RuntimeError(
                f"SLURM submission failed ({e}); is this a SLURM login node?"
            ) from None
        for task, job in zip(tasks, jobs, strict=True):
            print(f"submitted {task.run.label}: job {job.job_id}")
        print(f"submitit logs: {folder}")
    failures = []
    if wait or cluster == "local":
        for task, job in zip(tasks, tqdm(jobs, desc="waiting", unit="job"), strict=True):
            try:
                job.result()
            except Exception:  # submitit re-raises the task's error with its whole traceback
                log = f"{task.run.output_dir}/train_stdout.log"
                failures.append(
                    f"{task.run.label}: job {job.job_id} failed; see {log} and "
                    f"{job.paths.stderr}"
                )
    return failures
