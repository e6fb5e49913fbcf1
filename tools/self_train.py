#!/usr/bin/env python3
"""Self-training from image labels, for a set number of rounds: train a teacher (a
MixedSupervisionRCNN config, or --teacher weights), box the training set's image-label-only
positives with it (tools/pseudo_label.py), train a student on real + pseudo boxes
(FRACTURE.PSEUDO_BOXES), and again with the student as teacher. Each step is a project tool,
printed as it runs; trailing KEY VALUE pairs go to every step.

Outputs: OUTPUT_DIR/round0 (the teacher), OUTPUT_DIR/round<r>/pseudo_boxes.json and the
student of round r.

Example:
    python tools/self_train.py --rounds 2 --output-dir output/self_train \\
        --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_mixed.yaml
"""

import argparse
import sys
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--rounds", type=int, default=1, help="pseudo-label + student rounds")
    p.add_argument("--floor", type=float, default=0.05, help="pseudo boxes: the best from this")
    p.add_argument("--threshold", type=float, default=0.5, help="pseudo boxes: others from this")
    p.add_argument("--teacher", help="weights of a trained teacher (skips training one)")
    p.add_argument("--hidden", help="dataset of the real boxes, to score the pseudo boxes")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for every step")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    a.config_file, a.output_dir = str(Path(a.config_file).resolve()), Path(a.output_dir).resolve()
    from fracture_d2.inference import load_cfg
    from fracture_d2.selftrain import PseudoRule, self_training_steps
    from fracture_d2.steps import run_step

    try:
        cfg = load_cfg(a.config_file, a.opts)
        steps = self_training_steps(
            a.config_file,
            a.opts,
            cfg.DATASETS.TRAIN[0],
            a.output_dir,
            a.rounds,
            PseudoRule(a.floor, a.threshold),
            a.teacher,
            a.hidden,
        )
    except ValueError as e:
        print(f"self_train: {e}", file=sys.stderr)
        return 2
    for name, cmd in steps:
        seconds = run_step(name, cmd, who="self_train")
        print(f"=== self_train: {name} took {seconds:.0f} s", flush=True)
    print(f"\nself_train: the last student: {a.output_dir}/round{a.rounds}/model_final.pth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
