"""A simulated GPU for tests on a machine without one.

Inside ``SimDevice()``, tensors "on the device" are CPU tensors wrapped in :class:`SimTensor`,
whose ``device`` is ``cuda:0``: the code under test takes its CUDA branches and computes real
values with the CPU's kernels. What a GPU would refuse fails here too - an operator that mixes
a device tensor with a CPU tensor that is not a 0-dim scalar (CUDA's rule), so a tensor made
without ``device=`` in a model's path shows up without a GPU - and what would make the host
wait for the GPU is counted in ``waits``: reading values (``.item()``, ``.tolist()``,
``bool()``), device-to-host copies, blocking host-to-device copies (PyTorch ends them with a
stream synchronisation), and operators whose output size depends on values (``nonzero``,
boolean-mask indexing, ``unique``, ...).

Autograd records a CUDA stream for every tensor that requires grad on a ``cuda`` device, which
needs a real GPU (the process aborts), so ``SimDevice("meta")`` simulates the device as
``meta:0`` for training steps: the same checks and counts, but code that tests for ``is_cuda``
takes its other branch. With ``"cuda"``, operating on device tensors that require grad while
grad mode is on raises instead.

Not simulated: streams, events, ``torch.cuda.*`` (it stays as it is on this machine), memory,
timing, the numerics of CUDA kernels.
"""

from __future__ import annotations

import weakref
from collections import Counter

import torch
from torch.utils._mode_utils import no_dispatch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_any, tree_map

CPU = torch.device("cpu")

# ATen operators that, on a GPU tensor, copy something to the host and wait for it
WAITING_OPS = {
    "_local_scalar_dense",
    "nonzero",
    "masked_select",
    "equal",
    "is_nonzero",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "bincount",
    "histc",
    "nms",  # torchvision's CUDA kernel copies its suppression mask to the host
}
# operators a GPU accepts with CPU index tensors (it copies them over: a blocking copy)
CPU_INDEX_OPS = {"index", "index_put_", "_index_put_impl_", "index_put"}


class SimTensor(torch.Tensor):
    """A CPU tensor (``elem``) that says it is on the simulated device."""

    elem: torch.Tensor

    @staticmethod
    def __new__(cls, elem: torch.Tensor, device: torch.device):
        # never an inference tensor itself (autograd's view tracking of a wrapper made in
        # inference mode from a normal tensor fails); ``elem`` may be one
        with torch.inference_mode(False):
            return cls._wrap(elem, device)

    @classmethod
    def _wrap(cls, elem: torch.Tensor, device: torch.device):
        out = torch.Tensor._make_wrapper_subclass(
            cls,
            elem.shape,
            strides=elem.stride(),
            storage_offset=elem.storage_offset(),
            dtype=elem.dtype,
            layout=elem.layout,
            device=device,
            requires_grad=elem.requires_grad,
        )
        out.elem = elem
        return out

    def __repr__(self):
        return f"SimTensor({self.elem!r}, device={self.device})"

    def __reduce_ex__(self, protocol):
        # pickled (torch.save) as the host tensor it holds: a checkpoint written on the
        # simulated device loads anywhere, as a GPU's does with map_location="cpu"
        return self.elem.__reduce_ex__(protocol)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func}: a simulated device tensor used outside SimDevice()")


class _Waits(Counter):
    """A Counter that also notes where each wait comes from (``SimDevice.where``)."""

    def __init__(self, sim):
        super().__init__()
        self._sim = sim

    def __setitem__(self, key, value):
        if value > self.get(key, 0):
            self._sim.where[(key, _caller())] += value - self.get(key, 0)
        super().__setitem__(key, value)


def _caller(depth: int = 3) -> str:
    """The innermost ``depth`` frames of the code under test (not torch's, not this file's)."""
    import traceback

    frames = [
        f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}"
        for frame in reversed(traceback.extract_stack())
        if not any(p in frame.filename for p in ("/torch/", "sim_cuda.py", "/contextlib"))
    ]
    return " <- ".join(frames[:depth]) or "?"


def _unwrap(t):
    return t.elem if isinstance(t, SimTensor) else t


def _is_tensor(t) -> bool:
    return isinstance(t, torch.Tensor)


class SimDevice(TorchDispatchMode):
    """The simulated GPU (see the module's docstring): ``kind`` "cuda" or "meta" (training).
    ``waits`` counts the host waits by kind; ``wait_count`` is their total."""

    def __init__(self, kind: str = "cuda"):
        super().__init__()
        assert kind in ("cuda", "meta"), kind
        self.device = torch.device(kind, 0)
        self.waits: Counter = _Waits(self)
        self.where: Counter = Counter()  # (kind, file:line of the caller in the code under test)
        # the host tensors "pinned" (pin_memory returns the tensor itself), weakly: a freed
        # tensor's id may come back for another
        self._pinned = weakref.WeakValueDictionary()
        self._aliased = 0  # inside a call on host aliases: every tensor counts as on the device
        self._function_mode = _PythonCalls(self)

    @property
    def wait_count(self) -> int:
        return sum(self.waits.values())

    def reset(self) -> None:
        """Forget the waits counted so far (and where they came from)."""
        dict.clear(self.waits)
        self.where.clear()

    def is_sim(self, device) -> bool:
        if device is None or isinstance(device, bool):
            return False
        if isinstance(device, int):
            return self.device.type == "cuda"
        return torch.device(device).type == self.device.type

    def is_pinned(self, t) -> bool:
        return self._pinned.get(id(t)) is t

    def wrap(self, x):
        """CPU tensors (in any nested structure) as device tensors, no copy, no wait."""
        return tree_map(lambda t: SimTensor(t, self.device) if type(t) is torch.Tensor else t, x)

    def __enter__(self):
        # module.to(device): new Parameters around the moved tensors, not `param.data = ...`
        self._overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
        torch.__future__.set_overwrite_module_params_on_conversion(True)
        self._function_mode.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._function_mode.__exit__(*exc)
            torch.__future__.set_overwrite_module_params_on_conversion(self._overwrite)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = func.overloadpacket.__name__
        if name == "to":  # reaches the mode undecomposed in inference mode
            return self._to_as_copy(func, types, args, kwargs)
        on_device, on_host = [], []
        for t in _tensors((args, kwargs)):
            (on_device if isinstance(t, SimTensor) else on_host).append(t)
        to_device = self.is_sim(kwargs.get("device"))
        if to_device:
            kwargs["device"] = CPU
        if name in ("_pin_memory", "pin_memory"):
            self._pinned[id(args[0])] = args[0]
            return args[0]
        if name == "is_pinned":
            return self.is_pinned(args[0])
        kwargs.pop("pin_memory", None)

        if name in ("_to_copy", "copy_"):
            self._count_copy(name, args, kwargs, to_device)
        elif on_device or self._aliased:
            mixed = [] if self._aliased else [tuple(t.shape) for t in on_host if t.dim() > 0]
            if mixed and name not in CPU_INDEX_OPS:
                raise RuntimeError(
                    f"{func}: expected all tensors on one device, got {self.device} and cpu "
                    f"tensors of shapes {mixed}"
                )
            if mixed:
                self.waits["blocking_host_to_device"] += 1
            if name in WAITING_OPS or (name == "index" and _has_mask(args)):
                self.waits[name] += 1

        if torch.Tag.inplace_view in func.tags and isinstance(args[0], SimTensor):
            # unsqueeze_, transpose_, ...: Python hands back the wrapper itself, so its own
            # sizes and strides must change too (it has no storage: metadata only)
            func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
            with no_dispatch():
                func(*args, **kwargs)
            return args[0]
        func = _CPU_FOR_CUDA_ONLY.get(name, func)
        out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
        if name == "_to_copy" and "device" in kwargs and not to_device:
            return out  # to the host
        if name == "copy_" and not isinstance(args[0], SimTensor):
            return args[0]
        if on_device or to_device:
            return self.wrap(out)
        return out

    def _to_as_copy(self, func, types, args, kwargs):
        """``aten.to`` (any overload) as the ``aten._to_copy`` it stands for."""
        bound = dict(zip((a.name for a in func._schema.arguments), args, strict=False))
        bound.update(kwargs)
        src = bound["self"]
        other = bound.get("other")
        device = other.device if other is not None else bound.get("device") or src.device
        dtype = other.dtype if other is not None else bound.get("dtype") or src.dtype
        copy_kwargs = {"dtype": dtype, "device": device}
        for key in ("non_blocking", "memory_format"):
            if bound.get(key) is not None:
                copy_kwargs[key] = bound[key]
        return self.__torch_dispatch__(torch.ops.aten._to_copy.default, types, (src,), copy_kwargs)

    def _count_copy(self, name, args, kwargs, to_device):
        if name == "_to_copy":
            src = args[0]
            dst_dev = to_device if "device" in kwargs else isinstance(src, SimTensor)
            non_blocking = kwargs.get("non_blocking", False)
        else:
            dst, src = args[0], args[1]
            dst_dev = isinstance(dst, SimTensor)
            non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
        src_dev = isinstance(src, SimTensor)
        if src_dev and not dst_dev:
            self.waits["device_to_host"] += 1
        elif dst_dev and not src_dev:
            self._count_upload(src, non_blocking)

    def _count_upload(self, src, non_blocking: bool):
        if not non_blocking:
            self.waits["blocking_host_to_device"] += 1
        elif not self.is_pinned(src):
            self.waits["unpinned_host_to_device"] += 1  # staged through pinned memory


def _cudnn_batch_norm(x, weight, bias, mean, var, training, momentum, eps):
    out, save_mean, save_invstd = torch.ops.aten.native_batch_norm.default(
        x, weight, bias, mean, var, training, momentum, eps
    )
    return out, save_mean, save_invstd, torch.empty(0, dtype=torch.uint8)


# operators that PyTorch's composite operators pick for CUDA tensors and the CPU lacks
_CPU_FOR_CUDA_ONLY = {"cudnn_batch_norm": _cudnn_batch_norm}


def _tensors(tree) -> list:
    out = []
    tree_map(lambda t: out.append(t) if _is_tensor(t) else None, tree)
    return out


def _has_mask(args) -> bool:
    indices = args[1] if len(args) > 1 else []
    return any(_is_tensor(i) and i.dtype in (torch.bool, torch.uint8) for i in indices)


# calls that autograd does not record (so safe on a simulated "cuda" tensor that requires grad)
_NO_AUTOGRAD = {
    torch._has_compatible_shallow_copy_type,
    torch.Tensor.requires_grad_,
    torch.Tensor.detach,
    torch.Tensor.dim,
    torch.Tensor.size,
    torch.Tensor.numel,
    torch.Tensor.__repr__,
    torch.Tensor.__hash__,
    torch.Tensor.__eq__,  # nn.Module compares parameters by identity first
}


def _no_autograd(func) -> bool:
    return func in _NO_AUTOGRAD or getattr(func, "__name__", "") in ("__get__", "__set__")


class _PythonCalls(torch.overrides.TorchFunctionMode):
    """What must be caught before ATen's dispatch: calls that take a device before any tensor
    exists (``torch.zeros(..., device="cuda")``, ``torch.tensor``), moves (``x.to("cuda")``,
    ``x.cuda()``), and indexing (Python's ``x[i]`` sets the CUDA device first)."""

    def __init__(self, sim: SimDevice):
        super().__init__()
        self.sim = sim

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        sim = self.sim
        if sim.device.type == "cuda" and torch.is_grad_enabled() and not _no_autograd(func):
            if tree_any(lambda t: isinstance(t, SimTensor) and t.requires_grad, (args, kwargs)):
                raise RuntimeError(
                    f"SimDevice('cuda'): {getattr(func, '__name__', func)} on a device tensor "
                    "that requires grad (needs a real GPU); use SimDevice('meta')"
                )
        if func is torch.Tensor.cuda:
            return self._move(args[0], kwargs)
        if func is torch.Tensor.copy_ and tree_any(lambda t: isinstance(t, SimTensor), args):
            # Python's copy_ sets the CUDA device first: the ATen operator does not
            return torch.ops.aten.copy_.default(*args, **kwargs)
        if getattr(func, "__name__", "").endswith("_like") and isinstance(args[0], SimTensor):
            # torch.zeros_like & co. initialise the CUDA device first
            onto = kwargs.get("device")
            kwargs["device"] = CPU
            out = func(args[0].elem, *args[1:], **kwargs)
            return sim.wrap(out) if onto is None or sim.is_sim(onto) else out
        if func is torch.Tensor.tolist and isinstance(args[0], SimTensor):
            sim.waits["device_to_host"] += 1
            return args[0].elem.tolist()
        if func is torch.Tensor.numpy and isinstance(args[0], SimTensor):
            raise TypeError(f"can't convert {sim.device} tensor to numpy: copy it to the host")
        if func is torch.Tensor.to and self._to_device(args, kwargs):
            return self._move(args[0], kwargs, args[1:])
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and isinstance(
            args[0], SimTensor
        ):
            return self._index(func, *args)
        if not sim.is_sim(kwargs.get("device")):
            try:
                return func(*args, **kwargs)
            except torch.AcceleratorError:  # a Python binding that set the CUDA device first
                if not tree_any(lambda t: isinstance(t, SimTensor), (args, kwargs)):
                    raise
            return self._on_host_aliases(func, args, kwargs)
        # a factory (torch.zeros, torch.arange, torch.tensor, ...) on the device
        kwargs["device"] = CPU
        kwargs.pop("pin_memory", None)
        if func in (torch.tensor, torch.as_tensor) and args:
            data = args[0]
            if isinstance(data, SimTensor):
                return func(*args, **kwargs)
            sim._count_upload(data, non_blocking=False)
        return sim.wrap(func(*args, **kwargs))

    def _to_device(self, args, kwargs) -> bool:
        device = kwargs.get("device")
        for a in args[1:]:
            if isinstance(a, torch.device | str | int) and not isinstance(a, bool):
                device = a
            elif _is_tensor(a):
                return isinstance(a, SimTensor)
        return self.sim.is_sim(device)

    def _move(self, x, kwargs, rest=()):
        if isinstance(x, SimTensor):
            return x
        dtype = kwargs.get("dtype") or next((a for a in rest if isinstance(a, torch.dtype)), None)
        non_blocking = kwargs.get("non_blocking", False) or any(a is True for a in rest)
        self.sim._count_upload(x, non_blocking)
        out = x.clone() if dtype is None else x.to(dtype)
        return self.sim.wrap(out.requires_grad_(x.requires_grad) if x.is_leaf else out)

    def _on_host_aliases(self, func, args, kwargs):
        """``func`` on CPU aliases of its device tensors (see :meth:`_index`), the result back
        on the device; the same checks and counts as the dispatch (the aliases count as device
        tensors there)."""
        host = [t for t in _tensors((args, kwargs)) if not isinstance(t, SimTensor)]
        if any(t.dim() > 0 for t in host):
            shapes = [tuple(t.shape) for t in host]
            raise RuntimeError(f"{func}: expected all tensors on one device, got cpu {shapes}")
        self.sim._aliased += 1
        try:
            out = func(*tree_map(_to_host_alias, args), **tree_map(_to_host_alias, kwargs))
        finally:
            self.sim._aliased -= 1
        return tree_map(
            lambda t: _DeviceAlias.apply(t, self.sim.device) if type(t) is torch.Tensor else t, out
        )

    def _index(self, func, x, index, value=None):
        """``x[index]`` and ``x[index] = value`` on a device tensor, on a CPU alias of ``x``
        that autograd links to it; the waits a GPU would make are counted here."""
        waits = self.sim.waits
        for i in index if isinstance(index, tuple) else (index,):
            if _is_tensor(i) and i.dtype in (torch.bool, torch.uint8):
                waits["index_with_mask"] += 1  # a nonzero on the device
            elif (_is_tensor(i) and not isinstance(i, SimTensor) and i.dim() > 0) or isinstance(
                i, list
            ):
                waits["blocking_host_to_device"] += 1  # host indices copied over
        host_index = tree_map(_to_host_alias, index)
        if func is torch.Tensor.__getitem__:
            return _DeviceAlias.apply(_HostAlias.apply(x)[host_index], self.sim.device)
        if _is_tensor(value) and not isinstance(value, SimTensor) and value.dim() > 0:
            raise RuntimeError(f"{tuple(x.shape)}[...] = a cpu tensor {tuple(value.shape)}")
        if torch.is_grad_enabled() and (x.requires_grad or getattr(value, "requires_grad", 0)):
            raise NotImplementedError("SimDevice: x[i] = v on tensors that require grad")
        x.elem[host_index] = _unwrap(value)
        return None


def _to_host_alias(t):
    return _HostAlias.apply(t) if isinstance(t, SimTensor) else t


class _HostAlias(torch.autograd.Function):
    """The CPU tensor inside a :class:`SimTensor`, linked to it for autograd."""

    @staticmethod
    def forward(ctx, x):
        ctx.device = x.device
        return x.elem.view_as(x.elem)

    @staticmethod
    def backward(ctx, grad):
        return SimTensor(grad, ctx.device)


class _DeviceAlias(torch.autograd.Function):
    """A CPU tensor as a :class:`SimTensor`, linked to it for autograd."""

    @staticmethod
    def forward(ctx, x, device):
        return SimTensor(x.view_as(x), device)

    @staticmethod
    def backward(ctx, grad):
        return _unwrap(grad), None


def host(x):
    """A device tensor's CPU values (in any nested structure), for comparisons; no wait counted
    (call it outside the ``SimDevice`` block or on finished results)."""
    return tree_map(_unwrap, x)
