"""Fused per-parameter gradient clipping (fracture_d2.fast.grad_clip) against Detectron2's."""

import math

import pytest
import torch
from detectron2.solver.build import maybe_add_gradient_clipping

from fracture_d2.config import get_fracture_cfg
from fracture_d2.engine.trainer import Trainer
from fracture_d2.fast.grad_clip import clip_per_parameter_, fused_clipping
from fracture_d2.speedbench.measure import count_ops


def params_with_grads(seed: int = 0) -> list:
    """Parameters whose gradients' norms span 1e-4 to 1e4 (clipped and not), a zero gradient,
    a float64 one, one without a gradient and one with a NaN."""
    g = torch.Generator().manual_seed(seed)
    params = []
    for i, shape in enumerate([(64, 3, 3, 3), (64,), (10, 20), (1,), (7, 5), (3, 4), (300,)]):
        p = torch.nn.Parameter(torch.randn(shape, generator=g))
        p.grad = torch.randn(shape, generator=g) * 10.0 ** (i - 3)
        params.append(p)
    params[3].grad.zero_()
    p64 = torch.nn.Parameter(torch.randn(5, dtype=torch.float64, generator=g))
    p64.grad = torch.randn(5, dtype=torch.float64, generator=g) * 100
    no_grad = torch.nn.Parameter(torch.randn(4, generator=g))
    nan = torch.nn.Parameter(torch.randn(6, generator=g))
    nan.grad = torch.randn(6, generator=g)
    nan.grad[2] = float("nan")
    return params + [p64, no_grad, nan]


def clip_config(clip_type: str, value: float, norm_type: float = 2.0):
    cfg = get_fracture_cfg()
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = clip_type
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = value
    cfg.SOLVER.CLIP_GRADIENTS.NORM_TYPE = norm_type
    return cfg


@pytest.mark.parametrize(
    "clip_type,value,norm_type",
    [("norm", 5.0, 2.0), ("norm", 0.5, 1.0), ("norm", 1.0, math.inf), ("value", 0.01, 2.0)],
)
def test_same_gradients_and_steps_as_detectron2(clip_type, value, norm_type):
    cfg = clip_config(clip_type, value, norm_type)
    ref_params, params = params_with_grads(), params_with_grads()
    if clip_type == "value":  # torch's clip_grad_value_ fails on a parameter without gradient
        del ref_params[-2], params[-2]
    ref = maybe_add_gradient_clipping(cfg, torch.optim.SGD)(ref_params, lr=0.1, momentum=0.9)
    fused = fused_clipping(torch.optim.SGD, clip_type, value, norm_type)(
        params, lr=0.1, momentum=0.9
    )
    assert type(fused).__name__ == "SGDWithFusedGradientClip"
    for _ in range(2):  # the second step with momentum
        ref.step()
        fused.step()
        for a, b in zip(ref_params, params, strict=True):
            torch.testing.assert_close(b, a, rtol=0, atol=0, equal_nan=True)
            if a.grad is not None:
                torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=0, equal_nan=True)
    if clip_type == "norm":  # clipping happened, and not everywhere
        before = params_with_grads()[:7]  # the finite gradients
        scaled = [not torch.equal(a.grad, b.grad) for a, b in zip(before, params[:7], strict=True)]
        assert any(scaled) and not all(scaled)
    assert fused.state_dict()["state"].keys() == ref.state_dict()["state"].keys()


def test_fewer_operators_than_per_parameter_clipping():
    params, ref_params = params_with_grads()[:7], params_with_grads()[:7]

    def detectron2():
        for p in ref_params:
            torch.nn.utils.clip_grad_norm_(p, 5.0, 2.0)

    ops = count_ops(detectron2), count_ops(lambda: clip_per_parameter_(params, "norm", 5.0))
    assert ops[1] < ops[0] / 2, ops  # 7 scalings + 7 fixed; Detectron2 about 8 per parameter
    for a, b in zip(ref_params, params, strict=True):
        assert torch.equal(a.grad, b.grad)


def test_trainer_builds_the_fused_optimizer_only_when_clipping():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    cfg = clip_config("norm", 5.0)
    fused = Trainer.build_optimizer(cfg, model)
    assert type(fused).__name__.endswith("WithFusedGradientClip")
    assert cfg.SOLVER.CLIP_GRADIENTS.ENABLED  # the config passed in is left as it was
    cfg.FRACTURE.FAST.FUSED_GRAD_CLIP = False
    assert type(Trainer.build_optimizer(cfg, model)).__name__.endswith("WithGradientClip")
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = False
    plain = Trainer.build_optimizer(cfg, model)
    assert "Clip" not in type(plain).__name__
    # the same parameter groups (learning rates, weight decay per group) as without clipping
    strip = [{k: v for k, v in g.items() if k != "params"} for g in plain.param_groups]
    assert strip == [{k: v for k, v in g.items() if k != "params"} for g in fused.param_groups]
    with pytest.raises(ValueError, match="CLIP_TYPE"):
        fused_clipping(torch.optim.SGD, "full_model", 1.0)
    # the same optimizer state layout as Detectron2's, so checkpoints load into either
    assert fused.state_dict()["param_groups"] == plain.state_dict()["param_groups"]
