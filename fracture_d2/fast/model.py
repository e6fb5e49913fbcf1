"""The model-level speed switches, applied once to a built model: channels-last memory format
and a compiled backbone. Weights and state-dict keys stay unchanged, so checkpoints load with or
without them."""

from __future__ import annotations

import logging

import torch

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _channels_last_input(_module, args):
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


def prepare_model(model: torch.nn.Module, cfg) -> torch.nn.Module:
    """Apply ``FRACTURE.FAST.CHANNELS_LAST`` (NHWC weights, and a forward pre-hook giving the
    backbone NHWC input) and ``COMPILE_BACKBONE`` to ``model`` in place; returns it. The
    Trainer, the predictor and the benchmark all build their models through this."""
    fast = cfg.FRACTURE.FAST
    if fast.CHANNELS_LAST:
        model.to(memory_format=torch.channels_last)
        model.backbone.register_forward_pre_hook(_channels_last_input)
    if fast.COMPILE_BACKBONE:
        compile_backbone(model, cfg)
    return model


def compile_backbone(model: torch.nn.Module, cfg, backend: str = "inductor") -> torch.nn.Module:
    """``torch.compile`` ``model.backbone`` in place with ``FRACTURE.FAST.COMPILE_MODE`` and
    ``COMPILE_DYNAMIC`` (symbolic input sizes: one compile covers multi-scale training and
    every test size; else Dynamo recompiles for a new size, up to twice, then goes dynamic
    anyway). ``backend``: for tests (a fast one); the mode applies to inductor only.

    With symbolic sizes and ``CHANNELS_LAST`` inductor is also told to keep its convolution
    layouts channels-last (``force_layout_optimization``): otherwise its lowering of the
    convolutions' backward fixes the gradients' strides, which depend on the input size, and
    training recompiles for every new size after all (docs/speed.md). The mode goes in as its
    inductor options: ``torch.compile`` takes a mode or options, not both."""
    fast = cfg.FRACTURE.FAST
    if fast.COMPILE_MODE not in COMPILE_MODES:
        raise ValueError(
            f"FRACTURE.FAST.COMPILE_MODE must be one of {COMPILE_MODES}, got {fast.COMPILE_MODE!r}"
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
