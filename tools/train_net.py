#!/usr/bin/env python3
"""Train or evaluate a fracture detector with the project's Trainer.

Examples:
    python tools/train_net.py --config-file configs/quick_schedules/faster_rcnn_R_18_FPN_demo.yaml
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config-file CFG --num-gpus 8 SOLVER.IMS_PER_BATCH 16
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS W TEST.AUG.ENABLED True
"""

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from fracture_d2.config import get_fracture_cfg
from fracture_d2.data import register_all
from fracture_d2.engine import Trainer
from fracture_d2.engine.tta import tta_hooks


def setup(args):
    """Register the datasets under ``$DETECTRON2_DATASETS`` and build the frozen config from
    ``--config-file`` and trailing ``KEY VALUE`` pairs."""
    register_all()
    cfg = get_fracture_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    # the project's own log lines go to the same console and OUTPUT_DIR/log.txt(.rankN)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="fracture_d2")
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:  # test-time augmentation, as Detectron2's train_net.py
            res.update(Trainer.test_with_TTA(cfg, model))
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.register_hooks(tta_hooks(trainer))  # TEST.AUG.ENABLED: evaluate with TTA at the end
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser(epilog=__doc__).parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
