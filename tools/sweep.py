#!/usr/bin/env python3
"""Run a sweep: configs (with KEY VALUE overrides) x seeds x folds, each run a train_net.py
training + evaluation in its own OUTPUT_DIR (<output_dir>/<config>/fold<f>_seed<s>/, with
run_info.json: config, seed, fold, git commit, package versions).

Runs whose metrics exist are skipped, so a stopped sweep is resumed by running it again. The
whole sweep file is checked first (unknown config keys, missing config files, unprepared
datasets): a bad file stops with one line and nothing is written.

Launchers:
    local           one run after another on this machine (default)
    slurm           one SLURM job array through submitit; multi-GPU and multi-node runs go
                    through Detectron2's launch (--gpus-per-node, --nodes)
    submitit-local  submitit's local executor: the same pickled tasks as on SLURM, run here

Examples:
    python tools/sweep.py sweeps/synthetic_protocol.yaml
    python tools/sweep.py sweeps/mura_detectors.yaml --dry-run
    python tools/sweep.py sweeps/mura_detectors.yaml --launcher slurm --partition gpu \\
        --gpus-per-node 8 --nodes 1 --timeout 1440
"""

import argparse
import sys
from pathlib import Path

from fracture_d2.benchmarking.launch import ClusterOptions, pending, run_here, submit
from fracture_d2.benchmarking.runner import TrainTask
from fracture_d2.benchmarking.sweep_spec import SweepError, load_sweep


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("sweep", metavar="SWEEP.yaml")
    p.add_argument("--launcher", choices=("local", "slurm", "submitit-local"), default="local")
    p.add_argument("--output-dir", help="replaces the sweep file's output_dir")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their status only")
    p.add_argument("--only", nargs="+", metavar="CONFIG", help="run only these configs")
    p.add_argument("--keep-going", action="store_true", help="local: go on after a failed run")
    p.add_argument("--num-gpus", type=int, default=1, help="local: GPUs per run (default 1)")
    c = ClusterOptions()
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--nodes", type=int, default=c.nodes, help="machines per run (default 1)")
    p.add_argument("--gpus-per-node", type=int, default=c.gpus_per_node)
    p.add_argument("--cpus-per-task", type=int, default=c.cpus_per_task)
    p.add_argument("--timeout", type=int, default=c.timeout_min, help="minutes per job")
    p.add_argument("--mem-gb", type=float, help="memory per node")
    p.add_argument("--array-parallelism", type=int, default=c.array_parallelism)
    p.add_argument("--wait", action="store_true", help="slurm: wait for the jobs to end")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        header, runs = load_sweep(a.sweep, a.output_dir)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.only:
        unknown = set(a.only) - {r.config for r in runs}
        if unknown:
            print(
                f"error: {a.sweep}: --only names unknown configs {sorted(unknown)}", file=sys.stderr
            )
            return 2
        runs = [r for r in runs if r.config in a.only]
    todo, done = pending(runs)
    print(
        f"sweep {header['name']}: {len(runs)} runs ({len(done)} done, {len(todo)} to run) "
        f"in {header['output_dir']}"
    )
    if a.dry_run:
        for r in runs:
            print(f"  {'done   ' if r in done else 'pending'}  {r.label:<40} {r.output_dir}")
        return 0
    gpus = a.gpus_per_node if a.launcher != "local" else a.num_gpus
    tasks = [TrainTask(r, gpus, header["file"]) for r in todo]
    if a.launcher == "local":
        failures = run_here(tasks, a.keep_going)
    else:
        options = ClusterOptions(
            a.partition,
            a.nodes,
            a.gpus_per_node,
            a.cpus_per_task,
            a.timeout,
            a.mem_gb,
            a.array_parallelism,
        )
        cluster = "slurm" if a.launcher == "slurm" else "local"
        folder = Path(header["output_dir"]) / "submitit"
        try:
            failures = submit(tasks, folder, cluster, options, a.wait, header["name"])
        except RuntimeError as e:
            print(f"error: {a.sweep}: {e}", file=sys.stderr)
            return 2
    for f in failures:
        print(f"error: {f}", file=sys.stderr)
    print(f"compare: python tools/compare_runs.py {header['output_dir']} --by-config")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
