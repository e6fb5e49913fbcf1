#!/usr/bin/env python3
"""Convert the FracAtlas release (CC BY 4.0; figshare doi:10.6084/m9.figshare.22363012) to COCO.

Example:
    python datasets/prepare_fracatlas.py --root datasets/fracatlas/FracAtlas \\
        --out datasets/fracatlas
Then `fracatlas_train`, `fracatlas_val` (and `fracatlas_test` if the release's test.csv is
there) are registered datasets. See datasets/README.md for the layout and the quirks policy.
"""

import argparse
import sys

from fracture_d2.data.cli import (
    add_class_map_arg,
    add_validation_args,
    run_converter,
    validation_kwargs,
)
from fracture_d2.data.convert_fracatlas import DEFAULT_CLASS_MAP, prepare_fracatlas


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", required=True, help="the unpacked FracAtlas folder")
    p.add_argument(
        "--out", required=True, help="dataset folder, e.g. $DETECTRON2_DATASETS/fracatlas"
    )
    p.add_argument("--name", default="fracatlas", help="dataset name prefix")
    p.add_argument("--seed", type=int, default=0, help="seed spreading the negatives over splits")
    add_class_map_arg(p)
    p.set_defaults(class_map=DEFAULT_CLASS_MAP)
    add_validation_args(p)
    a = p.parse_args(argv)
    return run_converter(
        lambda: prepare_fracatlas(
            a.root, a.out, a.name, a.seed, class_map=a.class_map, **validation_kwargs(a)
        ),
        a.out,
    )


if __name__ == "__main__":
    sys.exit(main())
