"""Detectron2's per-parameter gradient clipping (``SOLVER.CLIP_GRADIENTS``) for all parameters
at once.

Detectron2 clips each parameter's gradient on its own before every optimizer step:
``torch.nn.utils.clip_grad_norm_(p, CLIP_VALUE, NORM_TYPE)`` (``CLIP_TYPE "norm"``) or
``clip_grad_value_(p, CLIP_VALUE)`` (``"value"``), one call per parameter tensor. A norm call
dispatches about eight operators (its norm, the norm of that one norm, the coefficient, the
clamp, the scaling) plus PyTorch's grouping of the tensors by device in Python, so the
from-scratch ResNet-50 FPN with GroupNorm (207 parameter tensors) dispatches 1,656 operators per
step for it (``tools/benchmark.py --grad-clip-steps``); on a GPU that waits for the host, each
is a kernel launch the GPU waits for.

:func:`clip_per_parameter_` gives every gradient the same values with one foreach norm over all
of them and the coefficients computed as one vector (the norm of a one-element vector and the
clamped ``max_norm / (norm + 1e-6)``, the arithmetic of ``clip_grad_norm_``), then one scaling
per tensor issued from C++; value clipping is two foreach clamps. :func:`build_optimizer` builds
Detectron2's SGD clipping that way before each step.
Bit-identical on the CPU (tested); on a GPU the foreach norm of many tensors runs as one kernel,
and ``tools/benchmark.py --grad-clip-steps`` reports whether the gradients came out the same.
Switched on by ``FRACTURE.FAST.FUSED_GRAD_CLIP`` (the project's Trainer only).
"""

from __future__ import annotations

from collections import defaultdict

import torch

CLIP_TYPES = ("value", "norm")  # Detectron2's per-parameter clip types


def _check_clip_type(clip_type: str) -> None:
    if clip_type not in CLIP_TYPES:
        raise ValueError(
            f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be one of {CLIP_TYPES}, got {clip_type!r}"
        )


def _grads_by_device_and_dtype(params) -> list[list[torch.Tensor]]:
    groups = defaultdict(list)
    for p in params:
        if p.grad is not None:
            groups[(p.grad.device, p.grad.dtype)].append(p.grad)
    return list(groups.values())


@torch.no_grad()
def clip_per_parameter_(params, clip_type: str, clip_value: float, norm_type: float = 2.0):
    """Clip each parameter's gradient in place as Detectron2's per-parameter clipper would:
    ``clip_type`` "norm" scales each gradient by ``min(clip_value / (its norm + 1e-6), 1)``,
    "value" clamps it to [-clip_value, clip_value]. Parameters without a gradient are skipped."""
    _check_clip_type(clip_type)
    clip_value, norm_type = float(clip_value), float(norm_type)
    for grads in _grads_by_device_and_dtype(params):
        if clip_type == "value":
            torch._foreach_clamp_min_(grads, -clip_value)
            torch._foreach_clamp_max_(grads, clip_value)
        else:
            norms = torch.stack(torch._foreach_norm(grads, norm_type))
            # as clip_grad_norm_ of one tensor: the norm of the one-element vector of its norm
            # (equal to the norm itself unless the norm's square overflows), row by row
            norms = torch.linalg.vector_norm(norms[:, None], norm_type, dim=1)
            coef = torch.clamp(clip_value / (norms + 1e-6), max=1.0)
            torch._foreach_mul_(grads, coef.unbind())


def fused_clipping(optimizer_type: type, clip_type: str, clip_value: float, norm_type: float = 2.0):
    """A subclass of ``optimizer_type`` that clips every parameter's gradient by
    :func:`clip_per_parameter_` before each step, as the class of
    :func:`detectron2.solver.build.maybe_add_gradient_clipping` does parameter by parameter."""
    _check_clip_type(clip_type)  # when the optimizer is built, not at its first step

    def step(self, closure=None):
        clip_per_parameter_(
            (p for group in self.param_groups for p in group["params"]),
            clip_type,
            clip_value,
            norm_type,
        )
        return optimizer_type.step(self, closure)

    name = optimizer_type.__name__ + "WithFusedGradientClip"
    return type(name, (optimizer_type,), {"step": step})


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Detectron2's ``build_optimizer`` (SGD over its default parameter groups) with
    ``SOLVER.CLIP_GRADIENTS`` done by :func:`fused_clipping`. The SGD arguments are Detectron2's;
    the optimizer is built from the clipping subclass, where Detectron2 changes the class of the
    built instance."""
    from detectron2.solver.build import get_default_optimizer_params

    s, clip = cfg.SOLVER, cfg.SOLVER.CLIP_GRADIENTS
    params = get_default_optimizer_params(
        model,
        base_lr=s.BASE_LR,
        weight_decay_norm=s.WEIGHT_DECAY_NORM,
        bias_lr_factor=s.BIAS_LR_FACTOR,
        weight_decay_bias=s.WEIGHT_DECAY_BIAS,
    )
    sgd = fused_clipping(torch.optim.SGD, clip.CLIP_TYPE, clip.CLIP_VALUE, clip.NORM_TYPE)
    return sgd(
        params,
        lr=s.BASE_LR,
        momentum=s.MOMENTUM,
        nesterov=s.NESTEROV,
        weight_decay=s.WEIGHT_DECAY,
        foreach=True,
    )
