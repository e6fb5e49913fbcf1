#!/usr/bin/env python3
"""Import Pascal VOC XML annotations (VOC devkit, LabelImg, CVAT export) as COCO splits.

Examples:
    python datasets/prepare_voc.py --root exports/voc_fractures --out datasets/vocfx --name vocfx
    python datasets/prepare_voc.py --root labelimg_folder --class-map "Fracture=fracture" \\
        --val-fraction 0.2 --out datasets/mine --name mine
Then `<name>_train`, `<name>_val`, ... are registered datasets.
"""

import argparse
import sys

from fracture_d2.data.cli import (
    add_class_map_arg,
    add_split_args,
    add_validation_args,
    run_converter,
    split_kwargs,
    validation_kwargs,
)
from fracture_d2.data.convert_voc import prepare_voc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", required=True, help="the VOC folder (file names relative to it)")
    p.add_argument("--out", required=True, help="dataset folder under $DETECTRON2_DATASETS")
    p.add_argument("--name", required=True, help="dataset name prefix (<name>_train ...)")
    p.add_argument("--annotations", default=None, help="XML folder (default ROOT/Annotations)")
    p.add_argument("--images", default=None, help="image folder (default ROOT/JPEGImages)")
    add_split_args(p)
    add_class_map_arg(p)
    add_validation_args(p)
    a = p.parse_args(argv)
    return run_converter(
        lambda: prepare_voc(
            a.root,
            a.out,
            a.name,
            annotations=a.annotations,
            images=a.images,
            **split_kwargs(a),
            **validation_kwargs(a),
        ),
        a.out,
    )


if __name__ == "__main__":
    sys.exit(main())
