#!/usr/bin/env python3
"""Import a YOLO-format folder (Ultralytics / Roboflow export, GRAZPEDWRI-DX) as COCO splits.

Examples:
    # Roboflow / Ultralytics export with data.yaml (names + train/val/test)
    python datasets/prepare_yolo.py --root exports/wrist-fractures --out datasets/wrist --name wrist
    # images/ + labels/ with a class list; keep only fracture; split 80/10/10 by patient id
    python datasets/prepare_yolo.py --root datasets/grazpedwri/GRAZPEDWRI-DX \\
        --names meta.yaml --class-map fracture --val-fraction 0.1 --test-fraction 0.1 \\
        --group-regex '^(\\d+)_' --out datasets/grazpedwri --name grazpedwri
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
from fracture_d2.data.convert_yolo import prepare_yolo


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", required=True, help="the YOLO folder (file names relative to it)")
    p.add_argument("--out", required=True, help="dataset folder under $DETECTRON2_DATASETS")
    p.add_argument("--name", required=True, help="dataset name prefix (<name>_train ...)")
    p.add_argument(
        "--names",
        default=None,
        help="class names: 'a,b,c', a text file (one per line) or a YAML with names:\n"
        "(default: ROOT/data.yaml)",
    )
    p.add_argument("--data-yaml", default=None, help="YAML with names and train/val/test")
    p.add_argument("--images", default=None, help="image folder, for layouts not found alone")
    p.add_argument("--labels", default=None, help="label folder mirroring --images")
    add_split_args(p)
    add_class_map_arg(p)
    add_validation_args(p)
    a = p.parse_args(argv)
    return run_converter(
        lambda: prepare_yolo(
            a.root,
            a.out,
            a.name,
            names=a.names,
            data_yaml=a.data_yaml,
            images=a.images,
            labels=a.labels,
            **split_kwargs(a),
            **validation_kwargs(a),
        ),
        a.out,
    )


if __name__ == "__main__":
    sys.exit(main())
