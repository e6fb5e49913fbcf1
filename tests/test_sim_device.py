"""The simulated GPU of the tests (tests/sim_cuda.py): it must refuse what a GPU refuses, count
what makes a GPU's host wait, and compute the same values as the CPU."""

import pytest
import torch
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from sim_cuda import SimDevice, SimTensor, host

from fracture_d2.engine.batched_rpn import device_anchors


@pytest.mark.parametrize("kind", ["cuda", "meta"])
def test_a_tensor_made_on_the_host_is_refused(kind):
    with SimDevice(kind):
        x = torch.arange(6, device=kind, dtype=torch.float32)
        assert isinstance(x, SimTensor) and x.device.type == kind
        assert torch.equal(host(x + torch.tensor(2.0)), torch.arange(2.0, 8.0))  # 0-d: a scalar
        with pytest.raises(RuntimeError, match="one device"):
            x + torch.ones(6)  # e.g. torch.ones without device= in a model's path
        with pytest.raises(RuntimeError, match="one device"):
            torch.cat([x, torch.ones(2)])
        with pytest.raises(RuntimeError, match="cpu tensor"):
            x[:2] = torch.ones(2)


def test_waits_are_counted_by_kind():
    with SimDevice("cuda") as sim, torch.no_grad():
        x = torch.arange(6, device="cuda", dtype=torch.float32)
        assert sim.wait_count == 0  # made on the device
        assert (x > 2).sum().item() == 3
        assert x.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        assert torch.equal(host(x[x > 3]), torch.tensor([4.0, 5.0]))
        x.nonzero()
        x.cpu()
        assert dict(sim.waits) == {
            "_local_scalar_dense": 1,
            "device_to_host": 2,
            "index_with_mask": 1,
            "nonzero": 1,
        }
        sim.reset()
        torch.ones(3).to("cuda")  # pageable memory, blocking: the stream is synchronised
        torch.ones(3).pin_memory().to("cuda", non_blocking=True)  # no wait
        torch.ones(3).to("cuda", non_blocking=True)  # staged through pinned memory
        x[torch.tensor([0, 2])]  # host indices: copied over, blocking
        torch.tensor([1.0, 2.0], device="cuda")  # from Python data
        assert dict(sim.waits) == {"blocking_host_to_device": 3, "unpinned_host_to_device": 1}
        assert any("test_sim_device.py" in where for _, where in sim.where)
    with SimDevice("cuda"):  # in-place view operators change the wrapper's sizes too
        x = torch.arange(12.0, device="cuda").view(3, 4)
        assert x.unsqueeze_(0).transpose_(1, 2).shape == (1, 4, 3) == x.elem.shape
        assert torch.equal(host(x.contiguous())[0], torch.arange(12.0).view(3, 4).t())
    with SimDevice("cuda") as sim, torch.inference_mode():  # aten.to is not decomposed here
        x = torch.ones(3, device="cuda")
        assert type(x.cpu()) is torch.Tensor and isinstance(x.to(torch.int64), SimTensor)
        assert isinstance(torch.ones(2).to(x), SimTensor)
        assert dict(sim.waits) == {"device_to_host": 1, "blocking_host_to_device": 1}


def test_meta_kind_trains_with_the_cpus_values():
    """Forward and backward through indexing, boolean masks and a module moved to the device:
    the same values and gradients as on the CPU."""

    def step(device):
        torch.manual_seed(0)
        layer = torch.nn.Linear(4, 3).to(device)
        x = torch.randn(5, 4).to(device)
        y = layer(x)
        loss = y[y > 0].sum() + y[1:3, ::2].pow(2).sum()
        loss.backward()
        return [host(t) for t in (loss, layer.weight.grad, layer.bias.grad)]

    ref = step("cpu")
    with SimDevice("meta"):
        out = step("meta")
    for a, b in zip(ref, out, strict=True):
        assert type(b) is torch.Tensor and torch.equal(a, b)


def test_cuda_kind_refuses_autograd():
    """Autograd asks a real GPU for its stream (the process would abort): refused instead."""
    with SimDevice("cuda"):
        layer = torch.nn.Linear(4, 3).to("cuda")
        with pytest.raises(RuntimeError, match="SimDevice\\('meta'\\)"):
            layer(torch.ones(2, 4, device="cuda"))
        with torch.no_grad():
            assert layer(torch.ones(2, 4, device="cuda")).shape == (2, 3)


@pytest.mark.parametrize("offset", [0.0, 0.5])
def test_device_anchors_are_detectron2s_without_host_copies(offset):
    """Detectron2 makes the anchor grid on the CPU and copies it over (two blocking copies per
    level); the project's is made on the device, bit for bit the same."""
    generator = DefaultAnchorGenerator(
        sizes=[[32], [64], [128], [256], [512]],
        aspect_ratios=[[0.5, 1.0, 2.0]],
        strides=[4, 8, 16, 32, 64],
        offset=offset,
    )
    features = [torch.zeros(1, 2, -(-97 // s), -(-130 // s)) for s in generator.strides]
    ref = generator(features)
    for a, b in zip(ref, device_anchors(generator, features), strict=True):
        assert torch.equal(a.tensor, b.tensor)
    with SimDevice("cuda") as sim, torch.no_grad():
        generator.to("cuda")
        sim.reset()
        features = [f.to("cuda", non_blocking=True) for f in features]
        stock = generator(features)
        assert sim.waits["blocking_host_to_device"] == 2 * len(features)
        sim.reset()
        out = device_anchors(generator, features)
        assert sim.wait_count == 0
    for a, b, c in zip(ref, stock, out, strict=True):
        assert torch.equal(a.tensor, host(b.tensor)) and torch.equal(a.tensor, host(c.tensor))
