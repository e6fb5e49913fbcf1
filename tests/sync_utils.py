"""Test helpers that see what would make a GPU's host wait: host reads of tensor values and the
ATen operators dispatched."""

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class HostReads(torch.overrides.TorchFunctionMode):
    """Counts the calls that copy a tensor's values to the host (each a wait on a GPU)."""

    READS = {torch.Tensor.tolist, torch.Tensor.item, torch.Tensor.__bool__, torch.equal}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += func in self.READS
        return func(*args, **(kwargs or {}))


class OpNames(TorchDispatchMode):
    """The names of the ATen operators dispatched while active."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))
