#!/usr/bin/env python3
"""Serve a trained fracture detector over HTTP: POST an image, get boxes and scores as JSON.

Endpoints: POST /v1/predict (multipart field 'file': PNG, JPEG or DICOM; ?threshold=0.3,
?overlay=true), GET /v1/model, /healthz, /readyz, /metrics; interactive docs at /docs.
With --token-env NAME set to a variable holding a token, /v1/* ask for 'Authorization:
Bearer <token>'.

Examples:
    python tools/serve.py --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml \\
        MODEL.WEIGHTS output/demo/model_final.pth
    curl -F file=@scan.dcm 'http://127.0.0.1:8000/v1/predict?threshold=0.3'
    python tools/serve.py --config-file CFG --exported output/export/model.onnx --port 9000
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fracture_d2.evaluation.scores import IMAGE_SCORE_METHODS
from fracture_d2.inference.cli import parse_with_opts


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True, metavar="FILE", help="model config (YAML)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--exported",
        metavar="FILE",
        help="run this .ts/.onnx file from tools/export_model.py instead of MODEL.WEIGHTS",
    )
    p.add_argument("--max-batch", type=int, default=8, help="images per forward pass at most")
    p.add_argument(
        "--max-wait-ms", type=float, default=10.0, help="how long an image waits for a batch"
    )
    p.add_argument(
        "--queue-size", type=int, default=64, help="waiting images at most; more get 503"
    )
    p.add_argument("--max-upload-mb", type=float, default=64.0, help="largest file accepted")
    p.add_argument(
        "--max-pixels", type=int, default=50_000_000, help="largest width x height accepted"
    )
    p.add_argument("--threshold", type=float, default=0.5, help="default operating point")
    p.add_argument(
        "--image-score",
        choices=IMAGE_SCORE_METHODS,
        default="max",
        help="image score: from the boxes (max, noisy_or) or, for a MixedSupervisionRCNN\n"
        "model, from its image-level head (head, mean_head_max)",
    )
    p.add_argument(
        "--token-env",
        default="FRACTURE_D2_TOKEN",
        metavar="NAME",
        help="environment variable holding the bearer token (unset or empty: no token)",
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    return parse_with_opts(p, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import uvicorn

    from fracture_d2.inference import load_cfg
    from fracture_d2.inference.predictor import check_weights
    from fracture_d2.serving import ServeSettings, create_app
    from fracture_d2.serving.model import load_served_model

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    cfg = load_cfg(args.config_file, args.opts)
    try:  # refuse at once what would only fail later in the loading thread
        if args.exported is None:
            check_weights(cfg)
        elif not os.path.isfile(args.exported):
            raise FileNotFoundError(f"{args.exported}: exported model not found (--exported)")
        settings = ServeSettings(
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            queue_size=args.queue_size,
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=args.max_pixels,
            threshold=args.threshold,
            score_method=args.image_score,
            token=os.environ.get(args.token_env) or None,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"serve: {e}", file=sys.stderr)
        return 2
    app = create_app(
        lambda: load_served_model(
            cfg, args.config_file, args.exported, args.threshold, args.image_score
        ),
        settings,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
