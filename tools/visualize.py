#!/usr/bin/env python3
"""Pictures of a dataset, a model's predictions and its metrics, with an offline index.html.

- panels (ground truth | predictions, TP/FP/missed colours at --iou) and grid sheets for images
  chosen by --ids, --body-part and --select (worst-fp, missed, tp, sample, all);
- heatmaps (gradient CAM of a detection, RPN objectness) when --config-file and MODEL.WEIGHTS are
  given;
- training curves from Detectron2's OUTPUT_DIR/metrics.json (--metrics), PR/FROC/ROC curves
  and metrics tables from tools/evaluate.py's output (--eval-dir).

Examples:
    python tools/visualize.py --dataset mura_synthetic_test_all \\
        --predictions output/demo/inference/mura_synthetic_test_all/coco_instances_results.json \\
        --metrics output/demo/metrics.json --eval-dir output/demo/evaluation \\
        --output output/demo/visualizations \\
        --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml \\
        MODEL.WEIGHTS output/demo/model_final.pth
    python tools/visualize.py --dataset mura_test --output out/gt_wrist --body-part XR_WRIST
    python tools/visualize.py --predictions output/predict/predictions.json --output out/pred
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = p.add_argument_group("inputs")
    src.add_argument("--dataset", help="registered dataset name (ground truth and images)")
    src.add_argument(
        "--predictions",
        help="coco_instances_results.json (with --dataset) or tools/predict.py's predictions.json",
    )
    src.add_argument("--metrics", help="training OUTPUT_DIR/metrics.json (training curves)")
    src.add_argument(
        "--eval-dir", help="tools/evaluate.py --out folder (or its metrics.json): curves, tables"
    )
    p.add_argument("--output", required=True, help="output folder (index.html goes here)")
    pick = p.add_argument_group("which images")
    pick.add_argument("--ids", type=int, nargs="+", default=[], help="image ids to draw")
    pick.add_argument(
        "--body-part", nargs="+", default=[], help="only these body parts (e.g. XR_WRIST)"
    )
    pick.add_argument(
        "--select",
        nargs="+",
        default=["worst-fp", "missed", "tp", "sample"],
        choices=("worst-fp", "missed", "tp", "sample", "all"),
        help="sections of panels (default: worst-fp missed tp sample)",
    )
    pick.add_argument("--max-images", type=int, default=8, help="panels per section")
    pick.add_argument("--grid-max", type=int, default=48, help="images on the overall grid")
    pick.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    draw = p.add_argument_group("drawing")
    draw.add_argument("--threshold", type=float, default=0.5, help="score threshold (0.5)")
    draw.add_argument("--iou", type=float, default=0.5, help="IoU for a hit (0.5)")
    draw.add_argument("--layout", choices=("side", "overlay"), default="side")
    heat = p.add_argument_group("heatmaps (need --config-file and MODEL.WEIGHTS)")
    heat.add_argument("--config-file", metavar="FILE", help="model config for heatmaps")
    heat.add_argument("--heatmaps", type=int, default=6, help="images with heatmaps (6)")
    heat.add_argument(
        "--cam-layer",
        default="res3",
        help="feature map of the CAM: res2..res5 (backbone, default res3), p2..p6 (FPN) or "
        "pooled (the FPN level the box was pooled from)",
    )
    heat.add_argument(
        "--cam-method",
        choices=("hirescam", "gradcam"),
        default="hirescam",
        help="hirescam: element-wise gradient x activation (instance-specific, default); "
        "gradcam: channel weights = mean gradient (Selvaraju et al.)",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    a = p.parse_args(argv)
    if not (a.dataset or a.predictions or a.metrics or a.eval_dir):
        p.error("give at least one of --dataset, --predictions, --metrics, --eval-dir")
    late = [x for x in a.opts if x.startswith("--")]
    if late:
        p.error(f"{' '.join(late)}: options go before the KEY VALUE config overrides")
    if a.opts and not a.config_file:
        p.error(f"config overrides {a.opts} need --config-file")
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    from fracture_d2.data.errors import DataError
    from fracture_d2.visualization import VisualizeOptions, visualize

    t0 = time.time()
    if a.dataset:
        from fracture_d2.data import register_all

        register_all()
    predictor = None
    info = [("command", shlex.join(["tools/visualize.py", *(argv or sys.argv[1:])]))]
    if a.config_file and a.heatmaps > 0:
        from fracture_d2.inference import BatchPredictor, load_cfg

        cfg = load_cfg(a.config_file, a.opts)
        try:
            predictor = BatchPredictor(cfg)
        except (ValueError, FileNotFoundError) as e:
            print(f"visualize: {e}", file=sys.stderr)
            return 2
        info.append(("model", f"{a.config_file} + {cfg.MODEL.WEIGHTS}"))
    opts = VisualizeOptions(
        dataset=a.dataset,
        predictions=a.predictions,
        train_metrics=a.metrics,
        eval_metrics=a.eval_dir,
        threshold=a.threshold,
        iou=a.iou,
        layout=a.layout,
        ids=a.ids,
        body_parts=a.body_part,
        selections=a.select,
        max_images=a.max_images,
        grid_max=a.grid_max,
        seed=a.seed,
        heatmaps=a.heatmaps,
        cam_layer=a.cam_layer,
        cam_method=a.cam_method,
        info=info,
    )
    try:
        index = visualize(a.output, opts, predictor)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"visualize: {e}", file=sys.stderr)
        return 2
    print(f"visualize: done in {time.time() - t0:.1f} s; open {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
