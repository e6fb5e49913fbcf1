#!/usr/bin/env python3
"""Evaluate fracture detections: COCO AP (overall, per body part), FROC, image- and
study-level metrics with patient-bootstrap 95% CIs -> DIR/metrics.json, metrics.csv, report.md.

Examples:
    python tools/evaluate.py --dataset mura_test_all \\
        --predictions output/mura/inference/mura_test_all/coco_instances_results.json \\
        --out output/mura/eval/mura_test_all
    python tools/evaluate.py --dataset mura_test_all --predictions P.json --out DIR \\
        --criterion center --image-score noisy_or --study-score mean --bootstrap 2000
"""

import argparse
import sys

from fracture_d2.evaluation.inputs import EvaluationError
from fracture_d2.evaluation.runs import evaluate_files
from fracture_d2.evaluation.scores import IMAGE_SCORE_METHODS
from fracture_d2.evaluation.suite import EvalOptions, headline


def parse_args(argv=None):
    d = EvalOptions()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True, help="registered dataset name (mura_test_all)")
    p.add_argument("--predictions", required=True, help="Detectron2 coco_instances_results.json")
    p.add_argument("--out", required=True, help="output folder for the report files")
    p.add_argument("--image-table", help="image-level CSV (default: the dataset's registered one)")
    p.add_argument(
        "--criterion",
        choices=("iou", "center"),
        default=d.criterion,
        help="FROC hit rule: IoU >= --iou-threshold, or centre inside the lesion",
    )
    p.add_argument("--iou-threshold", type=float, default=d.iou_threshold)
    p.add_argument(
        "--image-score",
        choices=IMAGE_SCORE_METHODS,
        default=d.image_method,
        help="image score: from its box scores (max, noisy_or), or from the image-level head\n"
        "(head, mean_head_max; needs --head-scores)",
    )
    p.add_argument(
        "--head-scores",
        help="image_head_scores.json of a MixedSupervisionRCNN run (beside its predictions)",
    )
    p.add_argument(
        "--study-score",
        choices=("max", "mean"),
        default=d.study_method,
        help="study score from its image scores",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=d.threshold,
        help="image-level operating point (score >= threshold is positive)",
    )
    p.add_argument(
        "--study-threshold",
        type=float,
        default=d.study_threshold,
        help="study-level operating point for Cohen's kappa (MURA: 0.5)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=d.bootstrap,
        help="patient-bootstrap resamples for 95%% CIs (0: none)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="bootstrap seed")
    p.add_argument(
        "--coco-impl",
        choices=("fast", "pycocotools"),
        default=d.coco_impl,
        help="COCO AP implementation (same numbers; pycocotools is much slower)",
    )
    p.add_argument("--config-name", help="config name for leaderboards (default: from log.txt)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    opts = EvalOptions(
        criterion=a.criterion,
        iou_threshold=a.iou_threshold,
        image_method=a.image_score,
        study_method=a.study_score,
        threshold=a.threshold,
        study_threshold=a.study_threshold,
        bootstrap=a.bootstrap,
        seed=a.seed,
        coco_impl=a.coco_impl,
    )
    try:
        opts.check()
        if a.dataset:
            from fracture_d2.data import register_all

            register_all()
        metrics, paths = evaluate_files(
            a.dataset, a.predictions, a.out, a.image_table, opts, a.config_name, a.head_scores
        )
    except (EvaluationError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    width = max(map(len, headline(metrics)), default=0)
    for k, v in headline(metrics).items():
        print(f"{k:<{width}}  {v:.4f}")
    for note in metrics["notes"]:
        print(f"note: {note}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
