#!/usr/bin/env python3
"""Pseudo boxes for a training set's image-label-only positives, from a trained teacher.

Each such image is known to be abnormal: its best box is kept if it scores at least --floor,
and every other box scoring at least --threshold. The result is a COCO JSON marked as pseudo
boxes, valid for that dataset and its classes; train a student on real + pseudo boxes with
`FRACTURE.PSEUDO_BOXES FILE` (tools/self_train.py does the rounds).

Example:
    python tools/pseudo_label.py \\
        --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_mixed.yaml \\
        --dataset mura_synthetic_train_box10_s0 --out output/mixed/pseudo_boxes.json \\
        --hidden mura_synthetic_train_box10_s0_hidden MODEL.WEIGHTS output/mixed/model_final.pth
"""

import argparse
import json
import sys


def parse_args(argv=None):
    from fracture_d2.inference.cli import parse_with_opts

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--dataset", required=True, help="the registered training set to label")
    p.add_argument("--out", required=True, help="pseudo-box JSON to write")
    p.add_argument("--floor", type=float, default=0.05, help="the best box is kept from this")
    p.add_argument("--threshold", type=float, default=0.5, help="other boxes are kept from this")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--hidden", help="a dataset of the real boxes (make_box_fraction's *_hidden)")
    p.add_argument("--round", type=int, default=1, help="self-training round (recorded)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides (MODEL.WEIGHTS)")
    return parse_with_opts(p, argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from fracture_d2.data import register_all
    from fracture_d2.inference import BatchPredictor, load_cfg
    from fracture_d2.selftrain import PseudoRule, pseudo_label, score_pseudo_boxes
    from fracture_d2.utils_io import write_json_atomic

    register_all()
    for name in filter(None, (a.dataset, a.hidden)):
        if name not in DatasetCatalog:
            print(f"pseudo_label: --dataset {name} is not registered", file=sys.stderr)
            return 2
    try:
        rule = PseudoRule(a.floor, a.threshold).check()
        cfg = load_cfg(a.config_file, a.opts)
        predictor = BatchPredictor(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"pseudo_label: {e}", file=sys.stderr)
        return 2
    info = {"teacher": cfg.MODEL.WEIGHTS, "config_file": a.config_file, "round": a.round}
    classes = MetadataCatalog.get(a.dataset).thing_classes
    dicts = DatasetCatalog.get(a.dataset)
    coco, counts = pseudo_label(predictor, a.dataset, classes, dicts, rule, info, a.batch_size)
    if a.hidden:
        hidden_json = MetadataCatalog.get(a.hidden).json_file
        with open(hidden_json, encoding="utf-8") as f:
            counts["against_real_boxes"] = score_pseudo_boxes(coco, json.load(f))
    coco["info"]["pseudo_boxes"]["counts"] = counts
    write_json_atomic(a.out, coco)
    print(json.dumps(counts))
    print(f"wrote {a.out} (train with FRACTURE.PSEUDO_BOXES {a.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
