#!/usr/bin/env python3
"""Export a trained detector to TorchScript and ONNX, and check both against the checkpoint.

Writes OUTPUT/model.ts (TorchScript, run by PyTorch without this project's Python code),
OUTPUT/model.onnx (run by onnxruntime) and OUTPUT/export_report.json. With --check, each file's
detections on those images must match the checkpoint's (float32): same boxes at IoU >= 0.99,
scores within 1e-3; the exit code is 1 otherwise, or if a format failed to export.
tools/serve.py --exported OUTPUT/model.onnx serves an exported file.

Example:
    python tools/export_model.py \\
        --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml \\
        --output output/export --check datasets/mura_synthetic/MURA-v1.1/valid \\
        MODEL.WEIGHTS output/demo/model_final.pth
"""

from __future__ import annotations

import argparse
import json
import sys

from fracture_d2.inference.cli import parse_with_opts


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True, metavar="FILE", help="model config (YAML)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument(
        "--format",
        nargs="+",
        choices=("torchscript", "onnx"),
        default=["torchscript", "onnx"],
        help="formats to write (default both)",
    )
    p.add_argument(
        "--check", nargs="+", default=[], help="images/folders/CSV lists for the parity check"
    )
    p.add_argument("--max-check", type=int, default=16, help="check at most this many images")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    return parse_with_opts(p, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from fracture_d2.data.errors import DataError
    from fracture_d2.data.synth_radiograph import render_radiograph
    from fracture_d2.export.workflow import export_and_check
    from fracture_d2.inference import collect_inputs, load_cfg, load_image
    from fracture_d2.inference.predictor import check_weights

    cfg = load_cfg(args.config_file, args.opts)
    try:
        check_weights(cfg)
        files = collect_inputs(args.check).files[: args.max_check] if args.check else []
        images = [load_image(f) for f in files]
    except (ValueError, FileNotFoundError, DataError) as e:
        print(f"export_model: {e}", file=sys.stderr)
        return 2
    if args.check and not images:
        print(f"export_model: no images in {' '.join(args.check)}", file=sys.stderr)
        return 2
    sample = None
    if not images:  # nothing to check: trace on a synthetic radiograph of the test size
        import numpy as np

        size = (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST)
        sample = render_radiograph("WRIST", size, 1, np.random.default_rng(0))[0]
    report = export_and_check(cfg, args.config_file, args.output, args.format, images, sample)
    print(
        json.dumps({k: report[k] for k in ("files", "failed", "parity", "ms_per_image")}, indent=1)
    )
    print(f"export_model: {'ok' if report['ok'] else 'FAILED'} -> {args.output}/export_report.json")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
