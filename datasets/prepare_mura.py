#!/usr/bin/env python3
"""Convert a MURA-v1.1 tree + fracture boxes into COCO detection splits.

Examples:
    python datasets/prepare_mura.py --mura-root datasets/mura/MURA-v1.1 \\
        --boxes my_boxes.csv --out datasets/mura
    python datasets/prepare_mura.py --mura-root datasets/mura/MURA-v1.1 \\
        --boxes team_a.csv --boxes cvat_export.json --class-map Fracture=fracture \\
        --out datasets/mura --skip-invalid
Then `mura_train`, `mura_val`, `mura_test`, `mura_test_XR_WRIST`, ... are registered datasets.
"""

import argparse
import sys

from fracture_d2.data.cli import (
    add_class_map_arg,
    add_validation_args,
    run_converter,
    validation_kwargs,
)
from fracture_d2.data.convert_mura import prepare_mura


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mura-root", required=True, help="the unpacked MURA-v1.1 folder")
    p.add_argument(
        "--boxes",
        required=True,
        action="append",
        default=[],
        help="box file, repeatable: CSV (image_path,x_min,y_min,x_max,y_max[,label]) or\n"
        "COCO JSON exported by CVAT / Label Studio (file_name holding the MURA path)",
    )
    p.add_argument("--out", required=True, help="dataset folder, e.g. $DETECTRON2_DATASETS/mura")
    p.add_argument("--name", default="mura", help="dataset name prefix (mura -> mura_train ...)")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of official-train patients held out as val",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    p.add_argument(
        "--keep-unannotated",
        action="store_true",
        help="keep positive images without boxes in the detection JSONs",
    )
    add_class_map_arg(p)
    add_validation_args(p)
    a = p.parse_args(argv)
    return run_converter(
        lambda: prepare_mura(
            a.mura_root,
            a.boxes,
            a.out,
            a.name,
            a.val_fraction,
            a.seed,
            a.keep_unannotated,
            class_map=a.class_map,
            **validation_kwargs(a),
        ),
        a.out,
    )


if __name__ == "__main__":
    sys.exit(main())
