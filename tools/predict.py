#!/usr/bin/env python3
"""Detect fractures in new radiographs: PNG/JPEG/BMP/TIFF and DICOM files, folders, CSV lists.

Writes OUTPUT/predictions.json (COCO results + an image-level score per image + the skipped
files) and OUTPUT/overlays/<same folders>/<name>.png. A file that cannot be read is reported and
skipped; the exit code is 1 if anything was skipped, unless --allow-skips.

Examples:
    python tools/predict.py --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml \\
        --input scans/ --output output/predict MODEL.WEIGHTS output/demo/model_final.pth
    python tools/predict.py --config-file CFG --input a.dcm b.png list.csv --threshold 0.3 \\
        --batch-size 16 --output out MODEL.WEIGHTS model_final.pth MODEL.DEVICE cuda
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from fracture_d2.inference.cli import parse_with_opts


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True, metavar="FILE", help="model config (YAML)")
    p.add_argument(
        "--input",
        nargs="+",
        required=True,
        help="image/DICOM files, folders (searched recursively) and/or .csv lists of paths",
    )
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument(
        "--root", default=None, help="folder for relative paths in CSV lists (default: the CSV's)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="boxes scoring at least this are written and drawn; images whose score reaches "
        "it are 'positive' (default 0.5)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass")
    p.add_argument("--num-workers", type=int, default=2, help="processes reading images")
    p.add_argument(
        "--image-score",
        choices=("max", "noisy_or", "head", "mean_head_max"),
        default="max",
        help="image-level score: from the box scores (max, noisy_or), or from the image-level\n"
        "head of a MixedSupervisionRCNN model (head, mean_head_max); default max",
    )
    p.add_argument("--no-overlays", action="store_true", help="write the JSON only")
    p.add_argument(
        "--allow-skips", action="store_true", help="exit 0 even if some files were skipped"
    )
    p.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS m.pth MODEL.DEVICE cuda",
    )
    a = parse_with_opts(p, argv)
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    from fracture_d2.inference import BatchPredictor, collect_inputs, load_cfg
    from fracture_d2.inference.run import predict_files

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_cfg(args.config_file, args.opts)
    try:
        predictor = BatchPredictor(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"predict: {e}", file=sys.stderr)
        return 2
    if args.image_score in ("head", "mean_head_max") and not hasattr(predictor.model, "image_head"):
        print(
            f"predict: --image-score {args.image_score} needs a model with an image-level head "
            f"(MODEL.META_ARCHITECTURE MixedSupervisionRCNN); {args.config_file} has none",
            file=sys.stderr,
        )
        return 2
    inputs = collect_inputs(args.input, args.root)
    if not inputs.files and not inputs.skipped:
        print(f"predict: no image files found in {' '.join(args.input)}", file=sys.stderr)
        return 2
    t0 = time.time()
    run = predict_files(
        inputs,
        predictor,
        args.output,
        threshold=args.threshold,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        score_method=args.image_score,
        overlays=not args.no_overlays,
        info={"config_file": args.config_file, "weights": cfg.MODEL.WEIGHTS},
    )
    dt = time.time() - t0
    print(
        f"predict: {run.n_images} images in {dt:.1f} s ({cfg.MODEL.DEVICE}, batch "
        f"{args.batch_size}); {len(run.skipped)} skipped -> {run.json_path}"
    )
    for reason, n in run.ignored.items():
        print(f"  not read: {n} files {reason}")
    if run.skipped:
        print("  skipped by reason: " + ", ".join(f"{r}: {n}" for r, n in run.reasons().items()))
        for s in run.skipped:
            print(f"  skipped {s.file}: {s.reason}")
        if not args.allow_skips:
            print(
                "predict: some inputs were skipped (use --allow-skips to exit 0)", file=sys.stderr
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
