#!/usr/bin/env python3
"""Ensemble several runs' predictions with Weighted Boxes Fusion (ensemble-boxes) into
DIR/predictions.json, which tools/evaluate.py reads like any other predictions file.

Inputs: Detectron2's coco_instances_results.json (e.g. OUTPUT_DIR/inference/<dataset>/ of
each fold or config) or tools/predict.py's predictions.json; all of one kind, over the same
images and classes (else one error line naming the file; nothing is written).

Examples:
    python tools/ensemble.py output/sweeps/p/frcnn/fold*_seed0/inference/mura_test_all/\\
coco_instances_results.json --out output/ensembles/frcnn_folds
    python tools/evaluate.py --dataset mura_test_all \\
        --predictions output/ensembles/frcnn_folds/predictions.json --out output/ensembles/eval
    python tools/ensemble.py a/predictions.json b/predictions.json --out ens --iou-thr 0.5
"""

import argparse
import sys

from fracture_d2.benchmarking.ensemble import CONF_TYPES, fuse, write_ensemble
from fracture_d2.benchmarking.ensemble_inputs import check_compatible, read_predictions
from fracture_d2.evaluation.inputs import EvaluationError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("predictions", nargs="+", metavar="PRED.json")
    p.add_argument("--out", required=True, help="output folder (predictions.json)")
    p.add_argument("--dataset", help="registered dataset the COCO results were made on")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per file (default 1)")
    p.add_argument("--iou-thr", type=float, default=0.55, help="boxes fuse above this IoU")
    p.add_argument("--skip-box-thr", type=float, default=0.0, help="ignore boxes scoring below")
    p.add_argument("--conf-type", choices=CONF_TYPES, default="avg", help="fused box score")
    p.add_argument("--max-dets", type=int, default=100, help="boxes kept per image (COCO: 100)")
    a = p.parse_args(argv)
    try:
        if a.weights and len(a.weights) != len(a.predictions):
            raise EvaluationError("--weights", f"needs {len(a.predictions)} values (one per file)")
        files = [read_predictions(f) for f in a.predictions]
        dataset = check_compatible(files, a.dataset)
        results = fuse(files, a.weights, a.iou_thr, a.skip_box_thr, a.conf_type, a.max_dets)
    except EvaluationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = {"inputs": [str(f.path) for f in files], "dataset": dataset, "method": "wbf"}
    info.update(weights=a.weights, iou_thr=a.iou_thr, skip_box_thr=a.skip_box_thr)
    info.update(conf_type=a.conf_type, max_dets=a.max_dets)
    path = write_ensemble(a.out, files, results, info)
    n_in = sum(len(f.results) for f in files)
    print(f"fused {n_in} boxes of {len(files)} runs into {len(results)} boxes: {path}")
    if dataset:
        print(
            f"evaluate: python tools/evaluate.py --dataset {dataset} --predictions {path} "
            f"--out {a.out}/eval"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
