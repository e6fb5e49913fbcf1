"""Speed and precision switches from the config: AMP dtype, inference autocast, TF32,
determinism, channels-last and a compiled backbone. Used by training, evaluation, the
predictor and the benchmark alike, so every path runs the same way."""

from __future__ import annotations

import contextlib
import logging
import os
import types

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


def apply_speed_switches(model: torch.nn.Module, cfg) -> torch.nn.Module:
    """Apply ``FRACTURE.FAST`` model switches in place (weights and state-dict keys unchanged).

    ``CHANNELS_LAST`` converts the weights and, through a forward pre-hook, the backbone input
    to NHWC; ``SYNC_FREE_SAMPLING`` swaps the RPN/ROI label assignment for one without host
    syncs (:mod:`fracture_d2.engine.sync_free`); ``BATCHED_HEADS`` computes the RPN/ROI targets
    and proposals for the whole batch at once (:mod:`fracture_d2.engine.batched_heads`);
    ``MATRIX_NMS`` runs the NMS of all images at once (:mod:`fracture_d2.engine.matrix_nms`);
    ``COMPILE_BACKBONE`` compiles the backbone module in place (``COMPILE_MODE``);
    ``DATALOADER.PIN_MEMORY`` makes the model copy its input images without a host wait
    (:func:`async_input_copies`).
    """
    fast = cfg.FRACTURE.FAST
    if fast.CHANNELS_LAST:
        model.to(memory_format=torch.channels_last)
        model.backbone.register_forward_pre_hook(
            lambda _m, args: (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
        )
    if fast.SYNC_FREE_SAMPLING:
        from .sync_free import make_sync_free

        make_sync_free(model)
    if fast.BATCHED_HEADS:
        from .batched_heads import make_batched

        make_batched(model, fast.METRICS_PERIOD)
    if fast.MATRIX_NMS:
        from .batched_heads import use_matrix_nms

        use_matrix_nms(model)
    if cfg.DATALOADER.PIN_MEMORY:
        async_input_copies(model)
    if fast.COMPILE_BACKBONE:
        compile_backbone(model, cfg)
    return model


def async_input_copies(model: torch.nn.Module) -> torch.nn.Module:
    """Detectron2's R-CNN copies each input image to its device with a blocking ``.to``: on a
    GPU the host waits for the stream (and the copy) before it issues the next operation. Swap
    that copy, on this instance, for :func:`to_device_async` (pinned memory, non-blocking), so
    the host goes on queueing the forward while the images travel. Images already on the
    device (the training loader's, with ``PIN_MEMORY``) are not copied. Returns ``model``."""
    if hasattr(model, "_move_to_current_device") and hasattr(model, "pixel_mean"):
        model._move_to_current_device = types.MethodType(_move_async, model)
    return model


def _move_async(self, x: torch.Tensor) -> torch.Tensor:
    return to_device_async(x, self.pixel_mean.device)


def compile_backbone(model: torch.nn.Module, cfg, backend: str = "inductor") -> torch.nn.Module:
    """``torch.compile`` ``model.backbone`` in place with ``FRACTURE.FAST.COMPILE_MODE`` and
    ``COMPILE_DYNAMIC`` (symbolic input sizes: one compile covers multi-scale training and
    every test size; else Dynamo recompiles for a new size, up to twice, then goes dynamic
    anyway). ``backend``: for tests (a fast one); the mode applies to inductor only.

    With symbolic sizes and ``CHANNELS_LAST`` (the default) inductor is also told to keep its
    convolution layouts channels-last (``force_layout_optimization``): otherwise its lowering
    of the convolutions' backward fixes the gradients' strides, which depend on the input size,
    and training recompiles for every new size after all. Measured with torch 2.14 on the
    smoke model, caches off, forward + backward at three sizes: three graphs without the
    option, with or without channels-last; one graph with both; three with the option on an
    NCHW model (so ``CHANNELS_LAST False`` gets a warning and no option). The mode goes in as
    its inductor options (``torch._inductor.list_mode_options``): ``torch.compile`` takes a
    mode or options, not both."""
    fast = cfg.FRACTURE.FAST
    modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if fast.COMPILE_MODE not in modes:
        raise ValueError(
            f"FRACTURE.FAST.COMPILE_MODE must be one of {modes}, got {fast.COMPILE_MODE!r}"
        )
    dynamic = bool(fast.COMPILE_DYNAMIC)
    kwargs = {"dynamic": dynamic or None}  # None: Dynamo's default
    if backend == "inductor":
        from torch._inductor import list_mode_options

        options = dict(list_mode_options(fast.COMPILE_MODE, kwargs["dynamic"]))
        if dynamic and fast.CHANNELS_LAST:
            options["force_layout_optimization"] = True
        elif dynamic:
            logging.getLogger(__name__).warning(
                "FRACTURE.FAST.COMPILE_DYNAMIC with CHANNELS_LAST False: inductor compiles the "
                "backbone's backward again for each new input size in training; "
                "CHANNELS_LAST True (the default) keeps one compile"
            )
        kwargs["options"] = options
    model.backbone.compile(backend=backend, **kwargs)
    return model


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
    host overheads, not arithmetic; README "Speed").
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


def to_device_async(x: torch.Tensor, device) -> torch.Tensor:
    """``x`` on ``device`` without a host wait: a CPU tensor bound for a GPU goes through pinned
    memory (pinned here if the loader did not) with ``non_blocking``. A blocking host-to-GPU
    copy, as Detectron2's ``tensor.to(device)`` of each input, synchronises the whole stream
    (PyTorch's ``memcpy_and_sync``): the host stops issuing work until the GPU has caught up."""
    device = torch.device(device)
    if x.device.type == "cpu" and device.type == "cuda" and not x.is_pinned():
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def batch_to_device(batch: list[dict], device) -> list[dict]:
    """A training batch (Detectron2's list of dicts) with its tensors and the tensors of its
    ``Instances`` (boxes and classes; other structures by their own ``.to``) on ``device``,
    copied without host waits (:func:`to_device_async`). Detectron2's model then finds them
    there and copies nothing."""
    from detectron2.structures import Boxes, Instances

    def move(v):
        if isinstance(v, torch.Tensor):
            return to_device_async(v, device)
        if isinstance(v, Boxes):  # RotatedBoxes too: constructed from their tensor
            return type(v)(to_device_async(v.tensor, device))
        if isinstance(v, Instances):
            out = Instances(v.image_size)
            for k, f in v.get_fields().items():
                out.set(k, move(f))
            return out
        if hasattr(v, "to"):
            return v.to(device)  # masks, keypoints: their own (blocking) copy, as Detectron2's
        return v

    return [{k: move(v) for k, v in d.items()} for d in batch]


class DeviceBatches:
    """A training loader whose batches come out already on ``device`` (:func:`batch_to_device`;
    ``DATALOADER.PIN_MEMORY`` on a GPU). The copies queue behind the GPU's work instead of
    waiting for it: ~3 host waits per image fewer (the image, the boxes, the classes)."""

    def __init__(self, loader, device):
        self.loader = loader
        self.device = torch.device(device)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield batch_to_device(batch, self.device)
