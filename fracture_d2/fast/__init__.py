"""The speed work, in one place. The Trainer, the predictor and the benchmark use only these:

- :func:`prepare_model` (channels-last, compiled backbone) on every built model;
- :func:`inference_model` (the static-shape path of ``FRACTURE.FAST.STATIC_INFERENCE``, or the
  model itself) and :func:`inference_autocast` (``FRACTURE.FAST.INFERENCE_DTYPE``) in
  evaluation and prediction;
- :func:`build_optimizer` (Detectron2's SGD with ``FRACTURE.FAST.FUSED_GRAD_CLIP``);
- :class:`DeviceBatches` (``DATALOADER.PIN_MEMORY``: batches moved to a GPU without waits);
- :func:`apply_backend_flags` and :func:`amp_dtype` (TF32, determinism, AMP precision).

The batched heads, ``BatchedRPN`` (:mod:`.rpn`) and ``BatchedROIHeads`` (:mod:`.roi_heads`),
are registered with Detectron2 by :mod:`fracture_d2.modeling` and chosen in
``configs/Base-RCNN-FPN.yaml``. Which switch is on by default where: :mod:`.policy`;
measurements: docs/speed.md.
"""

from .device import DeviceBatches
from .grad_clip import build_optimizer
from .model import prepare_model
from .precision import amp_dtype, apply_backend_flags, inference_autocast
from .static import inference_model

__all__ = [
    "DeviceBatches",
    "amp_dtype",
    "apply_backend_flags",
    "build_optimizer",
    "inference_autocast",
    "inference_model",
    "prepare_model",
]
