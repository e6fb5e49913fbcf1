"""fracture_d2.engine.box_transform: Detectron2's box encoding/decoding, bit for bit, in fewer
operators and without a host wait."""

import pytest
import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from sync_utils import OpNames

from fracture_d2.engine.benchmark import count_ops
from fracture_d2.engine.box_transform import vectorize_box_transform, vectorize_box_transforms

WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0)]


def random_boxes(n, generator, min_size=1.0):
    xy = torch.rand(n, 2, generator=generator) * 500
    return torch.cat([xy, xy + min_size + torch.rand(n, 2, generator=generator) * 200], dim=1)


def pair(weights):
    stock, fast = Box2BoxTransform(weights), Box2BoxTransform(weights)
    vectorize_box_transform(fast)
    return stock, fast


@pytest.mark.parametrize("weights", WEIGHTS)
def test_same_values_as_detectron2(weights):
    g = torch.Generator().manual_seed(0)
    stock, fast = pair(weights)
    assert fast.get_deltas.__func__ is not Box2BoxTransform.get_deltas
    src, target = random_boxes(2000, g), random_boxes(2000, g)
    assert torch.equal(fast.get_deltas(src, target), stock.get_deltas(src, target))
    for k in (1, 3):  # class-agnostic and per-class deltas
        deltas = torch.randn(2000, 4 * k, generator=g) * 3
        deltas[:5, 2::4] = 50.0  # beyond scale_clamp
        assert torch.equal(fast.apply_deltas(deltas, src), stock.apply_deltas(deltas, src))
        half = deltas.half()  # decoded in float32, as Detectron2's
        out = fast.apply_deltas(half, src.half())
        assert out.dtype == torch.float32
        assert torch.equal(out, stock.apply_deltas(half, src.half()))
    strided = torch.randn(8, 2000, generator=g).t()  # not contiguous: Detectron2 slices it
    assert torch.equal(fast.apply_deltas(strided, src), stock.apply_deltas(strided, src))
    empty = torch.zeros(0, 4)
    assert fast.get_deltas(empty, empty).shape == (0, 4)
    assert fast.apply_deltas(torch.zeros(0, 8), empty).shape == (0, 8)


def test_fewer_operators_and_no_host_wait():
    g = torch.Generator().manual_seed(1)
    stock, fast = pair((10.0, 10.0, 5.0, 5.0))
    src, target = random_boxes(100, g), random_boxes(100, g)
    deltas = torch.randn(100, 8, generator=g)
    for name, args in (("get_deltas", (src, target)), ("apply_deltas", (deltas, src))):
        ops = count_ops(getattr(stock, name), *args), count_ops(getattr(fast, name), *args)
        assert ops[1] < 0.7 * ops[0], (name, ops)

    with OpNames() as mode:
        fast.get_deltas(src, target)
    assert "_local_scalar_dense" not in mode.names and "_assert_async" in mode.names
    with OpNames() as mode:
        stock.get_deltas(src, target)
    assert "_local_scalar_dense" in mode.names  # Detectron2's .item() on the check


def test_invalid_boxes_still_rejected():
    _, fast = pair((1.0, 1.0, 1.0, 1.0))
    src = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 9.0]])  # zero width
    with pytest.raises(RuntimeError, match="Box2BoxTransform are not valid"):
        fast.get_deltas(src, src)


def test_other_transforms_left_alone():
    uneven = Box2BoxTransform((10.0, 5.0, 5.0, 5.0))  # a weight tensor would change the bits
    vectorize_box_transform(uneven)
    assert "get_deltas" not in vars(uneven)

    class Custom(Box2BoxTransform):
        pass

    custom = Custom((1.0, 1.0, 1.0, 1.0))
    vectorize_box_transform(custom)
    assert "apply_deltas" not in vars(custom)


def test_model_transforms_swapped():
    from detectron2.modeling import build_model

    from fracture_d2.config import get_fracture_cfg

    cfg = get_fracture_cfg()
    cfg.merge_from_file("configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml")
    cfg.MODEL.DEVICE = "cpu"
    model = vectorize_box_transforms(build_model(cfg))
    for transform in (
        model.proposal_generator.box2box_transform,
        model.roi_heads.box_predictor.box2box_transform,
    ):
        assert "get_deltas" in vars(transform) and "apply_deltas" in vars(transform)
