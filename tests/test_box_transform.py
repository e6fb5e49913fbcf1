"""fracture_d2.fast.box_transform: Detectron2's box encoding/decoding, bit for bit, in fewer
operators and without a host wait."""

import pytest
import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from sync_utils import OpNames

from fracture_d2.fast.box_transform import decode, encode, paired
from fracture_d2.speedbench.measure import count_ops

WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0)]


def random_boxes(n, generator, min_size=1.0):
    xy = torch.rand(n, 2, generator=generator) * 500
    return torch.cat([xy, xy + min_size + torch.rand(n, 2, generator=generator) * 200], dim=1)


class Paired:
    """The project's encoding and decoding with ``transform``'s weights, as methods."""

    def __init__(self, transform):
        self.transform = transform

    def get_deltas(self, src, target):
        return encode(self.transform, src, target)

    def apply_deltas(self, deltas, boxes):
        return decode(self.transform, deltas, boxes)


def pair(weights):
    return Box2BoxTransform(weights), Paired(Box2BoxTransform(weights))


@pytest.mark.parametrize("weights", WEIGHTS)
def test_same_values_as_detectron2(weights):
    g = torch.Generator().manual_seed(0)
    stock, fast = pair(weights)
    assert paired(fast.transform)
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


def test_other_transforms_use_their_own_methods():
    uneven = Box2BoxTransform((10.0, 5.0, 5.0, 5.0))  # a weight tensor would change the bits

    class Custom(Box2BoxTransform):
        def get_deltas(self, src_boxes, target_boxes):
            return "custom"

    custom = Custom((1.0, 1.0, 1.0, 1.0))
    assert not paired(uneven) and not paired(custom)
    g = torch.Generator().manual_seed(2)
    src, target = random_boxes(50, g), random_boxes(50, g)
    assert torch.equal(encode(uneven, src, target), uneven.get_deltas(src, target))
    assert encode(custom, src, target) == "custom"
