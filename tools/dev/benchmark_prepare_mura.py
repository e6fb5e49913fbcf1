#!/usr/bin/env python3
"""Time datasets/prepare_mura.py at full scale: wall time and peak memory, on N cores.

Generates (once, cached) a synthetic tree with the public MURA-v1.1 release's exact counts
(40,005 images; tiny images: 0.5-3 min on 2 cores, ~270 MB of disk; 70% of the
positive images boxed, as in a partial annotation effort), then runs the converter as users
do, in a fresh process pinned to --cores CPUs, and reads its peak RSS from the kernel
(os.wait4). The second run must give byte-identical outputs. Exits 1 if a run exceeds the budget
(default: 60 s, 1 GB).

Example:
    python tools/dev/benchmark_prepare_mura.py                 # cache in $TMPDIR
    python tools/dev/benchmark_prepare_mura.py --cache /data/mura_full --max-side 512
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BOX_FRACTION = 0.7  # a partial annotation effort: some positive images have no boxes


def _tree(cache: Path, seed: int, max_side: int) -> Path:
    """The cached full-size tree; (re)generated if missing or made with other settings."""
    want = {"seed": seed, "max_side": max_side, "box_fraction": BOX_FRACTION}
    stamp = cache / "benchmark_stamp.json"
    if (cache / "MURA-v1.1").is_dir() and stamp.is_file():
        if json.loads(stamp.read_text()) == want:
            return cache
    from fracture_d2.data.synth_mura import generate_synthetic_mura

    print(f"generating the full-size synthetic tree in {cache} (once) ...", flush=True)
    t = time.perf_counter()
    s = generate_synthetic_mura(
        cache,
        0,
        seed,
        max_side=max_side,
        box_fraction=BOX_FRACTION,
        overwrite=True,
        release_counts=True,
        rgb_fraction=0.1,
    )
    print(f"  {s['images']} images, {s['boxes']} boxes in {time.perf_counter() - t:.0f} s")
    stamp.write_text(json.dumps(want))
    return cache


def _run(cmd: list, cores: list) -> dict:
    """Run ``cmd`` pinned to ``cores``; wall seconds, CPU seconds, peak RSS (MB), output."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
    )
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": round(time.perf_counter() - t, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
        "returncode": proc.returncode,
        "output": out,
    }


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default_cache = Path(tempfile.gettempdir()) / "fracture_d2_mura_release"
    p.add_argument("--cache", type=Path, default=default_cache, help="where the tree is kept")
    p.add_argument("--max-side", type=int, default=32, help="image size of the tree (px)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cores", type=int, default=2, help="CPUs the converter may use")
    p.add_argument("--runs", type=int, default=2, help="runs (2+: also checks idempotence)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="wall-time budget per run")
    p.add_argument("--max-rss-mb", type=float, default=1024.0, help="peak-memory budget (MB)")
    a = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    tree = _tree(a.cache, a.seed, a.max_side)
    cores = sorted(os.sched_getaffinity(0))[: a.cores]
    results, digests = [], []
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        out = Path(tmp) / "mura"
        cmd = [
            sys.executable,
            str(REPO / "datasets" / "prepare_mura.py"),
            *("--mura-root", tree / "MURA-v1.1", "--boxes", tree / "boxes.csv", "--out", out),
        ]
        cmd = [str(c) for c in cmd]
        print("command:", " ".join(cmd), f"(pinned to CPUs {cores})")
        for i in range(a.runs):
            r = _run(cmd, cores)
            if r["returncode"] != 0:
                print(r["output"], file=sys.stderr)
                return 2
            digests.append(_digest(out / "annotations"))
            results.append({k: v for k, v in r.items() if k != "output"})
            print(
                f"  run {i + 1}: {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB"
            )
        for line in r["output"].splitlines():
            if line.startswith(("mura:", "  wrote", "  skipped", "  warning")):
                print("   ", line)
        summary = json.loads((out / "prepare_summary.json").read_text())
    worst = {k: max(r[k] for r in results) for k in ("wall_s", "peak_rss_mb")}
    ok = worst["wall_s"] <= a.max_seconds and worst["peak_rss_mb"] <= a.max_rss_mb
    same = len(set(digests)) == 1
    print(
        json.dumps(
            {
                "images": summary["read"]["images"],
                "boxes": summary["read"]["boxes"],
                "cores": len(cores),
                "runs": results,
                "byte_identical_reruns": same,
                "within_budget": ok,
            }
        )
    )
    if not ok:
        print(f"over budget: {worst} > {a.max_seconds} s / {a.max_rss_mb} MB", file=sys.stderr)
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
