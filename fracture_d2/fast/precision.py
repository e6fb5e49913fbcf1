"""Numeric precision from the config: the AMP dtype of training, the autocast dtype of
inference, TF32 and deterministic algorithms. Training, evaluation, the predictor and the
benchmark all take them from here, so every path runs the same way."""

from __future__ import annotations

import contextlib
import os

import torch


def amp_dtype(cfg) -> torch.dtype:
    """The autocast dtype named by ``SOLVER.AMP.PRECISION``."""
    names = {
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if cfg.SOLVER.AMP.PRECISION not in names:
        raise ValueError(
            f"SOLVER.AMP.PRECISION must be one of {sorted(names)}, "
            f"got {cfg.SOLVER.AMP.PRECISION!r}"
        )
    return names[cfg.SOLVER.AMP.PRECISION]


def native_bf16(device: str) -> bool:
    """Whether ``device`` runs bfloat16 natively (CPU: AVX512-BF16/AMX via oneDNN; GPU:
    Ampere or newer). Emulated bf16 would be slower than float32."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def inference_dtype(cfg) -> torch.dtype | None:
    """The autocast dtype of ``FRACTURE.FAST.INFERENCE_DTYPE`` (None: plain float32).

    ``auto`` is bfloat16 on a CPU that runs it natively, else float32: on an H200 the project's
    bf16 inference path measured no faster than stock float32 (Faster R-CNN there is bound by
    host overheads, not arithmetic; docs/speed.md).
    """
    name = cfg.FRACTURE.FAST.INFERENCE_DTYPE
    dtypes = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
    device = cfg.MODEL.DEVICE
    if name == "auto":
        cpu = not device.startswith("cuda")
        return torch.bfloat16 if cpu and native_bf16(device) else None
    if name not in dtypes:
        raise ValueError(
            f"FRACTURE.FAST.INFERENCE_DTYPE must be auto or one of {sorted(dtypes)}, "
            f"got {name!r}"
        )
    if not device.startswith("cuda") and dtypes[name] == torch.float16:
        raise ValueError("FRACTURE.FAST.INFERENCE_DTYPE float16 needs a GPU; use bfloat16")
    return dtypes[name]


def inference_autocast(cfg):
    """Autocast context for inference per ``FRACTURE.FAST.INFERENCE_DTYPE`` (a no-op for
    float32)."""
    dtype = inference_dtype(cfg)
    if dtype is None:
        return contextlib.nullcontext()
    device = "cuda" if cfg.MODEL.DEVICE.startswith("cuda") else "cpu"
    return torch.autocast(device_type=device, dtype=dtype)


def apply_backend_flags(cfg) -> None:
    """Process-wide switches from the config: TF32 and determinism."""
    torch.backends.cuda.matmul.allow_tf32 = bool(cfg.FRACTURE.TF32)
    torch.backends.cudnn.allow_tf32 = bool(cfg.FRACTURE.TF32)
    if cfg.FRACTURE.DETERMINISTIC:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
