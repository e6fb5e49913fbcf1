#!/usr/bin/env python3
"""Leaderboard of several runs: one Markdown + CSV table of their evaluation reports, with
config names, sorted by a metric (best first, per dataset).

A RUN_DIR is a training OUTPUT_DIR (reports in inference/<dataset>/metrics.json, written by
train_net.py's evaluator) or a tools/evaluate.py --out folder.

Examples:
    python tools/compare_runs.py output/mura/r50_3x output/mura/r101_3x --out output/leaderboard
    python tools/compare_runs.py output/eval/* --sort-by study_kappa --dataset mura_test_all
"""

import argparse
import sys

from fracture_d2.evaluation.inputs import EvaluationError
from fracture_d2.evaluation.leaderboard import (
    METRICS,
    leaderboard_rows,
    markdown,
    sort_rows,
    write_leaderboard,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--sort-by", default="froc", choices=list(METRICS), help="default: froc")
    p.add_argument("--dataset", help="only reports on this dataset")
    p.add_argument("--out", help="write leaderboard.md and leaderboard.csv here")
    a = p.parse_args(argv)
    try:
        rows = leaderboard_rows(a.run_dirs)
    except EvaluationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.dataset:
        rows = [r for r in rows if r["dataset"] == a.dataset]
        if not rows:
            print(f"error: no report on dataset {a.dataset} in {a.run_dirs}", file=sys.stderr)
            return 2
    rows = sort_rows(rows, a.sort_by)
    print(markdown(rows, a.sort_by))
    if a.out:
        paths = write_leaderboard(rows, a.out, a.sort_by)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
