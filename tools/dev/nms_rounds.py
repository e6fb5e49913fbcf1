#!/usr/bin/env python3
"""How many rounds the matrix NMS needs on a model's RPN proposals (FRACTURE.FAST.MATRIX_NMS,
STATIC_INFERENCE): per image and pyramid level, the rounds after which a round first changes
nothing. A batch converges when all its image-level groups have, so pick the rounds run before
the first check (``FIRST_ROUNDS``, ``FRACTURE.FAST.NMS_ROUNDS``) from the upper tail.

Examples:
    python tools/dev/nms_rounds.py \\
        --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml \\
        --dataset mura_synthetic_test_all --images 20 --pre-nms-topk 1000 2000 \\
        MODEL.WEIGHTS output/demo/model_final.pth
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter

import torch

from fracture_d2.inference.cli import parse_with_opts


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True, metavar="FILE", help="model config (YAML)")
    p.add_argument("--dataset", required=True, help="a registered dataset (its images are read)")
    p.add_argument("--images", type=int, default=20, help="first N images of the dataset")
    p.add_argument(
        "--pre-nms-topk",
        type=int,
        nargs="+",
        default=[1000, 2000],
        help="candidates per level before the NMS (Detectron2 trains with 2000)",
    )
    p.add_argument("--out", default=None, help="also write the histograms as JSON here")
    return parse_with_opts(p, argv)


@torch.inference_mode()
def rounds_histograms(predictor, grays: list, topks: list[int]) -> dict:
    """{pre-NMS top-k: Counter(rounds -> image-level groups)} of ``predictor``'s model."""
    from fracture_d2.fast.matrix_nms import rounds_needed
    from fracture_d2.fast.proposals import level_groups, rpn_candidates

    model = predictor.model
    rpn = model.proposal_generator
    out = {k: Counter() for k in topks}
    for gray in grays:
        images = model.preprocess_image([predictor.preprocess(gray)])
        features = model.backbone(images.tensor)
        features = [features[f] for f in rpn.in_features]
        hw = torch.tensor(images.image_sizes, dtype=torch.float32, device=images.tensor.device)
        for k in topks:
            boxes, scores, valid, sizes = rpn_candidates(rpn, features, hw, k)
            groups = [x.flatten(0, 1) for x in level_groups(boxes, scores, valid, sizes)]
            need = rounds_needed(*groups, rpn.nms_thresh)
            out[k].update(need[groups[2].any(dim=1)].tolist())  # groups with candidates
    return out


def main(argv=None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from detectron2.data import DatasetCatalog

    from fracture_d2.data import register_all
    from fracture_d2.data.image_io import read_radiograph
    from fracture_d2.inference.predictor import BatchPredictor, load_cfg

    register_all()
    cfg = load_cfg(a.config_file, a.opts)
    predictor = BatchPredictor(cfg)
    dicts = DatasetCatalog.get(a.dataset)[: a.images]
    grays = [read_radiograph(d["file_name"]) for d in dicts]
    hists = rounds_histograms(predictor, grays, a.pre_nms_topk)
    report = {}
    for k, hist in hists.items():
        total = sum(hist.values())
        over6 = sum(v for r, v in hist.items() if r > 6)
        report[k] = {"rounds": dict(sorted(hist.items())), "groups": total, "max": max(hist)}
        print(
            f"pre-NMS top-k {k}: {total} image-level groups; rounds -> groups "
            f"{dict(sorted(hist.items()))}; more than 6: {100 * over6 / total:.0f}%; "
            f"max {max(hist)}"
        )
    if a.out:
        from fracture_d2.utils_io import write_json_atomic

        write_json_atomic(a.out, {"dataset": a.dataset, "images": len(grays), **report})
    return 0


if __name__ == "__main__":
    sys.exit(main())
