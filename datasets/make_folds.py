#!/usr/bin/env python3
"""K patient-grouped folds of a prepared dataset's training images, stratified by body part and
image label (scikit-learn StratifiedGroupKFold); reproducible from --seed.

Writes <NAME>_fold{i}_train.json / <NAME>_fold{i}_val.json beside the dataset's other COCO
JSONs (registered as NAME_fold{i}_train / NAME_fold{i}_val) and <NAME>_folds.json (summary).

Examples:
    python datasets/make_folds.py --dataset mura --folds 5
    python datasets/make_folds.py --dataset mura_synthetic --folds 3 --seed 1 --splits train val
"""

import argparse
import sys

from fracture_d2.data.errors import DataError
from fracture_d2.data.folds import make_folds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", required=True, help="dataset prefix (mura: reads mura_train)")
    p.add_argument("--folds", type=int, required=True, help="number of folds K (>= 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument(
        "--splits",
        nargs="+",
        default=["train"],
        help="splits pooled into the folds (default: train; 'train val' pools both)",
    )
    a = p.parse_args(argv)
    try:
        s = make_folds(a.dataset, a.folds, a.seed, a.splits)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.dataset}: {a.folds} folds (seed {a.seed}) from {', '.join(s['sources'])}")
    for f in s["per_fold"]:
        strata = ", ".join(f"{k} {v}" for k, v in f["strata"].items())
        print(
            f"  fold {f['fold']}: {f['patients']:>6} patients {f['images']:>7} images "
            f"{f['boxes']:>6} boxes  ({strata})"
        )
    if s["images_without_patient_id"]:
        print(
            f"  note: {s['images_without_patient_id']} images have no patient_id: each is "
            "its own group"
        )
    for note in s["notes"]:
        print(f"  note: {note}")
    if s["removed_stale"]:
        print(f"  removed folds of an earlier run: {', '.join(s['removed_stale'])}")
    print(f"  registered names: {a.dataset}_fold{{0..{a.folds - 1}}}_{{train,val}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
