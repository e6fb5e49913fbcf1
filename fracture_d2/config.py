"""Project config keys, added on top of Detectron2's defaults.

Every key can be set in YAML or as a trailing ``KEY VALUE`` on the command line.
"""

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg


def add_fracture_config(cfg: CN) -> CN:
    """Add fracture_d2's keys (with their defaults) to a Detectron2 config, in place."""
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

    # Cap negatives (images without boxes) per epoch at this many per positive; 0 keeps all.
    cfg.DATALOADER.NEG_POS_RATIO = 0.0

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

    cfg.FRACTURE = CN()
    # Dataset for the validation loss (at TEST.EVAL_PERIOD); "" = DATASETS.TEST[0].
    cfg.FRACTURE.VAL_DATASET = ""
    # Log the losses on the validation dataset at every evaluation.
    cfg.FRACTURE.VAL_LOSS = True
    # COCOEvaluator tasks the Trainer asks for (the project detects boxes only).
    cfg.FRACTURE.EVAL_TASKS = ("bbox",)
    # Allow TF32 matmul/convolutions on Ampere+ GPUs (faster, ~1e-3 relative precision).
    cfg.FRACTURE.TF32 = True
    # Deterministic algorithms (slower); with SEED >= 0 gives repeatable runs on one device.
    cfg.FRACTURE.DETERMINISTIC = False

    ev = cfg.FRACTURE.EVAL = CN()
    # Run the medical evaluator (FROC, image/study level, per body part) next to COCOEvaluator.
    ev.ENABLED = True
    ev.FROC_CRITERION = "iou"  # FROC lesion hit: "iou" (IoU >= IOU_THRESHOLD) or "center"
    ev.IOU_THRESHOLD = 0.5  # IoU for a FROC hit with FROC_CRITERION "iou"
    ev.IMAGE_SCORE = "max"  # image score from its box scores: "max" or "noisy_or"
    ev.STUDY_SCORE = "max"  # study score from its image scores: "max" or "mean" (MURA paper)
    ev.THRESHOLD = 0.5  # image-level operating point for sensitivity/specificity/PPV/NPV/F1
    ev.STUDY_THRESHOLD = 0.5  # study-level operating point for Cohen's kappa (MURA: 0.5)
    ev.BOOTSTRAP = 1000  # patient-bootstrap resamples for 95% CIs; 0 = no CIs
    ev.BOOTSTRAP_SEED = 0  # seed of the bootstrap resampling

    fast = cfg.FRACTURE.FAST = CN()
    # Run the backbone in channels-last memory format (NHWC: oneDNN on CPU and tensor cores on
    # GPU prefer it; same results). Measured on 2 CPU cores: training 1.16x, inference 1.1x.
    fast.CHANNELS_LAST = True
    # torch.compile the backbone in place (state-dict keys unchanged); pays a compile on start.
    fast.COMPILE_BACKBONE = False
    # torch.compile mode for COMPILE_BACKBONE: "default", "reduce-overhead" (CUDA graphs: fewer
    # kernel launches from the host, for fixed input sizes), "max-autotune" or
    # "max-autotune-no-cudagraphs".
    fast.COMPILE_MODE = "default"
    # Compile the backbone for symbolic input sizes (one compile for multi-scale training and all
    # test sizes). False: Dynamo's default (a recompile for the first new height and width,
    # then dynamic). The static inference path always compiles per size (CUDA graphs).
    fast.COMPILE_DYNAMIC = True
    # Detectron2's per-parameter gradient clipping (SOLVER.CLIP_GRADIENTS) for all parameters at
    # once (fracture_d2.engine.grad_clip): the same gradients, a few operators per step instead
    # of about eight per parameter tensor.
    fast.FUSED_GRAD_CLIP = True
    # Copy losses to the host (a GPU sync) every N iterations instead of every iteration.
    fast.METRICS_PERIOD = 1
    # Label assignment in the RPN and ROI heads without host-device syncs (fracture_d2.engine.
    # sync_free): matchers give identical results; the RPN's anchor sample is drawn another
    # (equally uniform) way. For GPUs; off by default until measured there.
    fast.SYNC_FREE_SAMPLING = False
    # RPN/ROI-head training targets, losses, proposal selection and RoI pooling for the whole
    # batch at once (fracture_d2.engine.batched_heads): one host sync per stage instead of
    # several per image; same matches, proposals and pooled features, samples drawn another
    # (equally uniform) way. For GPUs; off by default until measured there.
    fast.BATCHED_HEADS = False
    # The NMS of the RPN (every image and pyramid level) and of the box predictor's inference
    # (every image and class) as one batched tensor computation (fracture_d2.engine.matrix_nms):
    # the same boxes as torchvision's NMS, no serial kernel and one host sync per batch instead
    # of one per image, at O(boxes^2) work per group (slower on CPUs). For GPUs; off by default
    # until measured there.
    fast.MATRIX_NMS = False
    # Inference (tools/predict.py, the benchmark's project path) on tensors of fixed shapes with
    # validity masks instead of Detectron2's variable-length steps (fracture_d2.engine.
    # static_inference): no host sync until the results are read, and with COMPILE_BACKBONE the
    # whole forward is compiled (COMPILE_MODE reduce-overhead: one CUDA graph per input size).
    # The same detections as Detectron2's (tested); off by default until measured on a GPU.
    fast.STATIC_INFERENCE = False
    # Rounds of the static path's matrix NMS before its convergence check (a batch that has not
    # converged is rerun by the model's own forward; 3-10 rounds sufficed on the demo model).
    fast.NMS_ROUNDS = 12
    # Static inference: pad the input height and width up to a multiple of this (0: the
    # backbone's SIZE_DIVISIBILITY, as Detectron2), so that images of similar sizes share one
    # compiled graph. Larger padding adds anchors in the padding and can change proposals.
    fast.STATIC_PAD = 0
    # Autocast dtype for inference (predictor and evaluation): "auto" (bfloat16 on CPUs that
    # run it natively, AVX512-BF16/AMX; float32 elsewhere, GPUs included), "float32",
    # "bfloat16" or "float16" (GPUs). Measured: R50-FPN CPU latency 1.75x lower, same AP50;
    # on an H200 no gain at 512 px (the loop is bound by host overheads, not by arithmetic).
    fast.INFERENCE_DTYPE = "auto"

    # Training data loader: keep workers alive between epochs / pin host memory for H2D copies.
    cfg.DATALOADER.PERSISTENT_WORKERS = False
    cfg.DATALOADER.PIN_MEMORY = False
    return cfg


def get_fracture_cfg() -> CN:
    """Detectron2's default config with the project's keys added (not frozen)."""
    return add_fracture_config(get_cfg())
