#!/usr/bin/env python3
"""Convert a MURA-v1.1 tree + fracture boxes into COCO detection splits.

Example:
    python datasets/prepare_mura.py --mura-root datasets/mura/MURA-v1.1 \\
        --boxes my_boxes.csv --out datasets/mura
Then `mura_train`, `mura_val`, `mura_test`, `mura_test_XR_WRIST`, ... are registered datasets.
"""

import argparse
import json
import sys

from fracture_d2.data.convert_mura import prepare_mura
from fracture_d2.data.errors import DataError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mura-root", required=True, help="the unpacked MURA-v1.1 folder")
    p.add_argument(
        "--boxes",
        required=True,
        action="append",
        default=[],
        help="box CSV (image_path,x_min,y_min,x_max,y_max[,label]); repeatable",
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
    a = p.parse_args(argv)
    try:
        summary = prepare_mura(
            a.mura_root, a.boxes, a.out, a.name, a.val_fraction, a.seed, a.keep_unannotated
        )
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
