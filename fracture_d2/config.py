"""Project config keys, added on top of Detectron2's defaults.

Every key can be set in YAML or as a trailing ``KEY VALUE`` on the command line.
"""

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

import fracture_d2.modeling  # noqa: F401  (registers the architectures the configs name)


def add_fracture_config(cfg: CN) -> CN:
    """Add fracture_d2's keys (with their defaults) to a Detectron2 config, in place."""
    _add_augmentation(cfg)
    _add_training(cfg)
    _add_image_head(cfg)
    _add_fracture(cfg)
    _add_speed(cfg)
    return cfg


def _add_augmentation(cfg: CN) -> None:
    aug = cfg.INPUT.RADIOGRAPH_AUG = CN()
    aug.ENABLED = True  # albumentations pipeline in the training mapper (test time: resize only)
    aug.HFLIP_PROB = 0.5  # left/right flip (radiographs of either side look alike)
    aug.BRIGHTNESS_CONTRAST_PROB = 0.5  # exposure differences between machines
    aug.BRIGHTNESS_LIMIT = 0.2  # +- fraction of the maximum intensity
    aug.CONTRAST_LIMIT = 0.2  # +- contrast factor
    aug.GAMMA_PROB = 0.3  # detector response curves differ
    aug.GAMMA_LIMIT = (80, 120)  # gamma range in percent
    aug.CLAHE_PROB = 0.2  # local contrast equalisation, as radiologists' viewers do
    aug.CLAHE_CLIP_LIMIT = 2.0  # CLAHE clip limit
    aug.ROTATE_PROB = 0.3  # limbs are not always aligned with the detector
    aug.ROTATE_LIMIT = 15.0  # degrees, +-
    aug.SHIFT_SCALE_PROB = 0.3  # positioning and magnification differences
    aug.SHIFT_LIMIT = 0.05  # fraction of the image size
    aug.SCALE_LIMIT = 0.1  # +- scale factor
    aug.NOISE_PROB = 0.2  # quantum noise of low-dose exposures
    aug.NOISE_STD = (0.01, 0.04)  # noise std as a fraction of the intensity range
    aug.MIN_VISIBILITY = 0.3  # a box keeping less of its area after augmentation is dropped


def _add_training(cfg: CN) -> None:
    # Cap negatives (images without boxes) per epoch at this many per positive; 0 keeps all.
    cfg.DATALOADER.NEG_POS_RATIO = 0.0
    # Largest share of sampled training images drawn from image-label-only positives (a model
    # with an image-level head; fewer if the data has fewer); the rest are box-complete images.
    # 0 = no share of their own (they are positives among the rest).
    cfg.DATALOADER.IMAGE_LABEL_SHARE = 0.0

    # Mixed-precision dtype when SOLVER.AMP.ENABLED: "float16" or "bfloat16" (no loss scaling
    # needed; Hopper/Ampere GPUs).
    cfg.SOLVER.AMP.PRECISION = "float16"
    cfg.SOLVER.BEST_CHECKPOINT = CN()
    # Keep model_best.pth by a metric logged at TEST.EVAL_PERIOD (needs EVAL_PERIOD > 0).
    cfg.SOLVER.BEST_CHECKPOINT.ENABLED = True
    # Metric name as stored by EvalHook; with several DATASETS.TEST use "<dataset>/bbox/AP50".
    cfg.SOLVER.BEST_CHECKPOINT.METRIC = "bbox/AP50"
    cfg.SOLVER.BEST_CHECKPOINT.MODE = "max"  # "max" for AP-like metrics, "min" for losses
    cfg.SOLVER.EARLY_STOP = CN()
    # Stop after this many evaluations without improving BEST_CHECKPOINT.METRIC; 0 = never.
    cfg.SOLVER.EARLY_STOP.PATIENCE = 0
    # Keep the data loader workers alive between epochs.
    cfg.DATALOADER.PERSISTENT_WORKERS = False
    # Pinned host memory; on a GPU, batches (training and evaluation) are moved to the device by
    # non-blocking copies as they leave the loader.
    cfg.DATALOADER.PIN_MEMORY = False


def _add_image_head(cfg: CN) -> None:
    head = cfg.MODEL.IMAGE_HEAD = CN()  # MODEL.META_ARCHITECTURE "MixedSupervisionRCNN" only
    head.IN_FEATURES = ["p3", "p4", "p5", "p6"]  # FPN levels the image-level head pools
    head.POOLING = "max"  # over positions: "max" (a fracture is local) or "avg"
    head.LOSS_WEIGHT = 1.0  # weight of loss_image_cls (binary cross-entropy on image labels)
    head.NORM = "GN"  # after the head's convolution ("" = none; unnormalized, its ReLUs can die)


def _add_fracture(cfg: CN) -> None:
    """FRACTURE.*: validation, numerics, pseudo boxes and the medical evaluation."""
    cfg.FRACTURE = CN()
    # Pseudo boxes (tools/pseudo_label.py) laid over the training dataset they were made for:
    # its image-label-only positives that got boxes train as boxed; "" = none.
    cfg.FRACTURE.PSEUDO_BOXES = ""
    # Dataset for the validation loss (at TEST.EVAL_PERIOD); "" = DATASETS.TEST[0].
    cfg.FRACTURE.VAL_DATASET = ""
    # Log the losses on the validation dataset at every evaluation.
    cfg.FRACTURE.VAL_LOSS = True
    # Allow TF32 matmul/convolutions on Ampere+ GPUs (faster, ~1e-3 relative precision).
    cfg.FRACTURE.TF32 = True
    # Deterministic algorithms (slower); with SEED >= 0 gives repeatable runs on one device.
    cfg.FRACTURE.DETERMINISTIC = False

    ev = cfg.FRACTURE.EVAL = CN()
    # Run the medical evaluator (FROC, image/study level, per body part) next to COCOEvaluator.
    ev.ENABLED = True
    ev.FROC_CRITERION = "iou"  # FROC lesion hit: "iou" (IoU >= IOU_THRESHOLD) or "center"
    ev.IOU_THRESHOLD = 0.5  # IoU for a FROC hit with FROC_CRITERION "iou"
    # Image score: from its box scores, "max" or "noisy_or"; or from the image-level head
    # (MixedSupervisionRCNN), "head" (its probability) or "mean_head_max" (mean of both).
    ev.IMAGE_SCORE = "max"
    ev.STUDY_SCORE = "max"  # study score from its image scores: "max" or "mean" (MURA paper)
    ev.THRESHOLD = 0.5  # image-level operating point for sensitivity/specificity/PPV/NPV/F1
    ev.STUDY_THRESHOLD = 0.5  # study-level operating point for Cohen's kappa (MURA: 0.5)
    ev.BOOTSTRAP = 1000  # patient-bootstrap resamples for 95% CIs; 0 = no CIs
    ev.BOOTSTRAP_SEED = 0  # seed of the bootstrap resampling


def _add_speed(cfg: CN) -> None:
    # Speed switches (fracture_d2/fast; measurements: docs/speed.md). On by default on every
    # device: CHANNELS_LAST, FUSED_GRAD_CLIP. Auto (None) by default, i.e. on where a benchmark
    # measured them faster at equal AP (fracture_d2/fast/policy.py), which so far is nowhere
    # (the CPU: not faster; GPUs: not yet measured): BATCHED_HEADS, MATRIX_NMS. Off by default,
    # built for GPUs and not yet measured there: STATIC_INFERENCE, COMPILE_BACKBONE,
    # DATALOADER.PIN_MEMORY.
    fast = cfg.FRACTURE.FAST = CN()
    # Run the backbone in channels-last memory format (NHWC; same results).
    fast.CHANNELS_LAST = True
    # Batched RPN / ROI-head targets, losses, proposal selection and RoI pooling (the heads
    # BatchedRPN and BatchedROIHeads chosen in configs/Base-RCNN-FPN.yaml; same matches and
    # proposals as Detectron2's, samples drawn another, equally uniform way). None: auto.
    fast.BATCHED_HEADS = None
    # The NMS of the RPN and of the box predictor for all images at once (the same boxes as
    # torchvision's NMS; needs the batched heads' classes). None: auto.
    fast.MATRIX_NMS = None
    # Detectron2's per-parameter gradient clipping (SOLVER.CLIP_GRADIENTS) for all parameters
    # at once: the same gradients in a few operators.
    fast.FUSED_GRAD_CLIP = True
    # Copy the losses to the host (a GPU sync) every N iterations instead of every iteration.
    fast.METRICS_PERIOD = 1
    # Inference on tensors of fixed shapes with validity masks (no host sync until the results
    # are read; with COMPILE_BACKBONE the whole forward compiles, one CUDA graph per size).
    fast.STATIC_INFERENCE = False
    # Static inference: rounds of its matrix NMS before the convergence check (a batch that has
    # not converged is rerun by the model's own forward).
    fast.NMS_ROUNDS = 12
    # Static inference: pad the input height and width up to a multiple of this (0: the
    # backbone's SIZE_DIVISIBILITY) so that similar sizes share one compiled graph.
    fast.STATIC_PAD = 0
    # torch.compile the backbone in place (state-dict keys unchanged); pays a compile on start.
    fast.COMPILE_BACKBONE = False
    # torch.compile mode: "default", "reduce-overhead" (CUDA graphs), "max-autotune" or
    # "max-autotune-no-cudagraphs".
    fast.COMPILE_MODE = "default"
    # Compile for symbolic input sizes (one compile for multi-scale training and all sizes).
    fast.COMPILE_DYNAMIC = True
    # Autocast dtype of inference (predictor, evaluation): "float32", "bfloat16", "float16"
    # (GPUs) or "auto" (bfloat16 on CPUs that run it natively, float32 elsewhere; faster on
    # such CPUs, but AP50 moves by a box or two either way, so not the default).
    fast.INFERENCE_DTYPE = "float32"


def get_fracture_cfg() -> CN:
    """Detectron2's default config with the project's keys added (not frozen)."""
    return add_fracture_config(get_cfg())
