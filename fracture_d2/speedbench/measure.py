"""Measuring tools of the speed benchmark: timings, operator and synchronisation counts,
GPU busy time, compile counters."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

logger = logging.getLogger("fracture_d2.benchmark")


@dataclass
class Timing:
    """Times of one path (stock or project) for one task."""

    name: str
    seconds: list = field(default_factory=list)  # one entry per timed block
    items: list = field(default_factory=list)  # images processed per block
    peak_gpu_mem_gib: float | None = None

    @property
    def per_second(self) -> float:
        return float(sum(self.items) / max(sum(self.seconds), 1e-12))

    def summary(self) -> dict:
        d = asdict(self)
        d["images_per_second"] = self.per_second
        d["seconds_per_item"] = 1.0 / self.per_second if self.per_second else None
        return d


def sync_device(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gpu_mem(device: str) -> float | None:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return None


# Operator names that wait for the device (host-device synchronisations) in a profile.
SYNC_OPS = ("aten::item", "aten::nonzero", "aten::_local_scalar_dense", "cudaStreamSynchronize")


class OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched (backward included) while active. Each one costs
    the host its dispatch and, on a GPU, usually a kernel launch: when the GPU waits for the host
    (Faster R-CNN at batch 16 on an H200, docs/speed.md), fewer operators per step is faster."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn, *args) -> int | None:
    """ATen operators dispatched by one call ``fn(*args)``; None (logged) where counting fails
    (a compiled module may refuse to run under a dispatch mode), so timings already measured
    are kept."""
    try:
        with OpCounter() as counter:
            fn(*args)
    except Exception as e:  # noqa: BLE001 - a measurement extra, never fatal
        logger.warning(f"operator count failed: {type(e).__name__}: {e}")
        return None
    return counter.count


def compile_counters() -> dict:
    """``torch.compile``'s counters in this process so far: frames compiled, graphs (more than
    the compiled regions: recompilations), graph breaks and CUDA-graph skips. In the JSON of a
    compiled run they say whether it ran the graphs it was meant to (``TORCH_LOGS=cudagraphs``
    logs the reason of a skip; on a CPU every ``reduce-overhead`` graph is a skip)."""
    from torch._dynamo.utils import counters

    return {
        "frames_compiled": counters["frames"]["ok"],
        "graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "cudagraph_skips": counters["inductor"]["cudagraph_skips"],
    }


def device_busy_us(events) -> float | None:
    """Microseconds in which the GPU ran anything (kernels, copies, sets: the union of their
    time ranges, so overlapping streams count once) among ``torch.profiler`` events; None
    without GPU events (a CPU run) or where the events cannot be read. Against the wall time of
    the same work it says whether the GPU or the host is the limit: a GPU busy for a fraction
    of a step waits for the host the rest of it."""
    from torch.autograd import DeviceType

    try:
        spans = sorted(
            (e.time_range.start, e.time_range.end)
            for e in events
            if e.device_type == DeviceType.CUDA
        )
    except Exception as e:  # a profiler of another version: the benchmark keeps its timings
        logger.warning(f"device busy time not read from the profile: {e!r}")
        return None
    if not spans:
        return None
    busy, (start, end) = 0.0, spans[0]
    for s, e in spans[1:]:
        if s > end:
            busy, start = busy + end - start, s
        end = max(end, e)
    return busy + end - start


def sync_counts(fn, calls: int, cuda: bool) -> tuple[dict, float | None]:
    """Per call of ``fn()``, the synchronising operators of :data:`SYNC_OPS` that
    ``torch.profiler`` records over ``calls`` calls, and the milliseconds the GPU was busy
    (:func:`device_busy_us`; None on a CPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(calls):
            fn()
        if cuda:
            torch.cuda.synchronize()
    counts = {e.key: e.count / calls for e in prof.key_averages() if e.key in SYNC_OPS}
    busy = device_busy_us(prof.events()) if cuda else None
    return counts, None if busy is None else busy / 1000 / calls


def time_calls(fn, inputs: list, warmup: int, device: str) -> tuple[float, int]:
    """Call ``fn(x)`` for each input after ``warmup`` untimed calls; (seconds, calls)."""
    for x in inputs[:warmup]:
        fn(x)
    sync_device(device)
    t = time.perf_counter()
    for x in inputs:
        fn(x)
    sync_device(device)
    return time.perf_counter() - t, len(inputs)


def median_latency(fn, inputs: list, device: str) -> float:
    """Median per-call latency in seconds (each call synchronised)."""
    out = []
    for x in inputs:
        sync_device(device)
        t = time.perf_counter()
        fn(x)
        sync_device(device)
        out.append(time.perf_counter() - t)
    return float(np.median(out))
