#!/usr/bin/env python3
"""Keep boxes for a fraction of a registered training set's positive images (seeded); the
other positives become image-label-only ("annotated": false), as MURA's unboxed abnormal images
are. Writes, beside the dataset's JSON:

    <dataset>_box<percent>_s<seed>.json         all images, boxes on the chosen positives only
    <dataset>_box<percent>_s<seed>_hidden.json  the other positives with their (hidden) boxes

both registered under their file names. Used to measure training with image labels on data
whose boxes are all known (README "Training with image labels").

Example:
    python datasets/make_box_fraction.py --dataset mura_synthetic_train --fraction 0.1 --seed 0
"""

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", required=True, help="a registered dataset, e.g. mura_train")
    p.add_argument("--fraction", type=float, required=True, help="share of positives keeping boxes")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice")
    p.add_argument("--name", help="output name (default <dataset>_box<percent>_s<seed>)")
    a = p.parse_args(argv)
    from fracture_d2.data.box_fraction import check_fraction, keep_box_fraction
    from fracture_d2.data.errors import DataError
    from fracture_d2.utils_io import write_json_atomic

    try:
        check_fraction(a.fraction)
        json_file = _json_of(a.dataset)
        coco = json.loads(json_file.read_text(encoding="utf-8"))
        kept, hidden, counts = keep_box_fraction(coco, a.fraction, a.seed)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = a.name or f"{a.dataset}_box{100 * a.fraction:g}_s{a.seed}"
    out = json_file.parent / f"{name}.json"
    write_json_atomic(out, kept)
    write_json_atomic(out.with_name(f"{name}_hidden.json"), hidden)
    print(", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"wrote {out} (registered as {name}) and {name}_hidden.json")
    return 0


def _json_of(dataset: str) -> Path:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from fracture_d2.data import register_all
    from fracture_d2.data.errors import DataError

    register_all()
    json_file = (
        MetadataCatalog.get(dataset).get("json_file", "") if dataset in DatasetCatalog else ""
    )
    if not json_file or not Path(json_file).is_file():
        raise DataError(f"--dataset {dataset}", "not a prepared dataset under $DETECTRON2_DATASETS")
    return Path(json_file)


if __name__ == "__main__":
    sys.exit(main())
