#!/usr/bin/env python3
"""Does the detector learn from image labels? On synthetic MURA-layout data with boxes kept for
a fraction of the training positives (the rest labelled by image only), train, per seed:

    box_only   boxes only (GeneralizedRCNN; the label-only positives are left out)
    mixed      boxes + image labels (MixedSupervisionRCNN)
    pseudo     mixed + self-training rounds (teacher: the mixed model)
    all_boxes  every box (GeneralizedRCNN)

and score each on the test split: bbox AP50, FROC score, image AUROC, study kappa. Writes
OUT/supervision.json ({"box_fraction": f, "runs": [{"arm", "seed", "ap50", "froc",
"image_auroc", "study_kappa"}, ...]}) and OUT/supervision.md (mean ± sd over seeds). Finished
runs are kept and skipped, so an interrupted benchmark resumes. Every step is a project tool,
printed as it runs; trailing KEY VALUE pairs go to every training.

Example (the README's table):
    python tools/benchmark_supervision.py --seeds 0 1 2 --box-fraction 0.1 --out output/supervision
"""

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/quick_schedules/faster_rcnn_R_18_FPN_mixed.yaml"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--box-fraction", type=float, default=0.1)
    p.add_argument("--out", default="output/supervision")
    p.add_argument("--config-file", default=CONFIG, help="the schedule every arm trains with")
    p.add_argument("--arms", nargs="+", default=None, help="a subset of the arms")
    p.add_argument("--patients", type=int, default=240, help="synthetic patients generated")
    p.add_argument("--rounds", type=int, default=1, help="self-training rounds of 'pseudo'")
    p.add_argument("--floor", type=float, default=0.05, help="pseudo boxes: the best from this")
    p.add_argument("--threshold", type=float, default=0.5, help="pseudo boxes: others from this")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every run")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    sys.path.insert(0, str(REPO))
    from fracture_d2.data.box_fraction import check_fraction
    from fracture_d2.data.errors import DataError
    from fracture_d2.selftrain import PseudoRule
    from fracture_d2.selftrain.benchmark import ARMS, run_benchmark, summary_table

    try:
        check_fraction(a.box_fraction)
        rule = PseudoRule(a.floor, a.threshold).check()
        arms = a.arms or list(ARMS)
        unknown = sorted(set(arms) - set(ARMS))
        if unknown:
            raise ValueError(f"unknown --arms {unknown}; arms: {list(ARMS)}")
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out, t0 = Path(a.out).resolve(), time.time()
    runs = run_benchmark(
        out, a.seeds, a.box_fraction, a.config_file, arms, a.patients, a.rounds, rule, a.opts
    )
    print(f"\n{summary_table(runs, a.box_fraction)}")
    print(f"wrote {out / 'supervision.json'}, supervision.md ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
