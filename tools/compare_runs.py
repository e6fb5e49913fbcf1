#!/usr/bin/env python3
"""Compare runs: a leaderboard of single runs, or runs grouped by config with paired tests.

Leaderboard (default): one Markdown + CSV table of the runs' evaluation reports, with config
names, sorted by a metric (best first, per dataset). A RUN_DIR is a training OUTPUT_DIR
(reports in inference/<dataset>/metrics.json, written by train_net.py's evaluator) or a
tools/evaluate.py --out folder.

--by-config: runs (RUN_DIRs, or folders holding runs such as a tools/sweep.py output) grouped
by config and test set (the folds' validation sets as one): mean ± sd and 95% CI over seeds
and folds of AP, AP50, FROC, image AUROC and study kappa. --paired A B adds paired tests of
config A against B on the same test images: patient bootstrap of ΔAP50 and ΔFROC, DeLong's
test of ΔAUROC, and across runs paired by (fold, seed) the paired t and Wilcoxon tests.
--out writes summary.md/.csv/.json, paired.csv and metrics.png (error bars).

Examples:
    python tools/compare_runs.py output/mura/r50_3x output/mura/r101_3x --out output/leaderboard
    python tools/compare_runs.py output/eval/* --sort-by study_kappa --dataset mura_test_all
    python tools/compare_runs.py output/sweeps/protocol --by-config --out output/sweeps/cmp
    python tools/compare_runs.py output/sweeps/protocol --paired retinanet faster_rcnn \\
        --dataset mura_synthetic_test_all --out output/sweeps/cmp
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


def by_config(a) -> int:
    from fracture_d2.benchmarking.aggregate import group_runs, summary_markdown
    from fracture_d2.benchmarking.paired import compare
    from fracture_d2.benchmarking.report import paired_markdown, write_comparison
    from fracture_d2.benchmarking.runs import collect_runs

    records = collect_runs(a.run_dirs)
    if a.dataset:
        records = [r for r in records if a.dataset in (r.dataset, r.role)]
        if not records:
            raise EvaluationError(a.dataset, f"no run was evaluated on it in {a.run_dirs}")
    rows = group_runs(records)
    comparisons = []
    if a.paired:
        comparisons = compare(records, *a.paired, resamples=a.resamples, seed=a.seed)
    print(summary_markdown(rows))
    if comparisons:
        print(paired_markdown(comparisons))
    if a.out:
        paths = write_comparison(rows, comparisons, a.out)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--sort-by", default="froc", choices=list(METRICS), help="default: froc")
    p.add_argument("--dataset", help="only reports on this dataset (or fold set, mura_fold*_val)")
    p.add_argument("--out", help="write the tables (and with --by-config the plot) here")
    p.add_argument("--by-config", action="store_true", help="group runs by config (see above)")
    p.add_argument("--paired", nargs=2, metavar=("A", "B"), help="paired tests of A vs B")
    p.add_argument("--resamples", type=int, default=1000, help="paired bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="paired bootstrap seed")
    a = p.parse_args(argv)
    try:
        if a.by_config or a.paired:
            return by_config(a)
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
