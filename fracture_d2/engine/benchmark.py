"""Side-by-side speed measurement: stock Detectron2 vs the project's path, in one process.

Training: Detectron2's ``DefaultTrainer`` (stock ``DatasetMapper``, ``SimpleTrainer`` /
``AMPTrainer``) and the project's :class:`~fracture_d2.engine.Trainer` are built on the same
config, data and device, warmed up, then timed in interleaved blocks of iterations, so drifts of
the machine (thermal, other load) hit both alike. Inference: see
:mod:`fracture_d2.inference.benchmark`.
"""

from __future__ import annotations

import logging
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from detectron2.engine import DefaultTrainer
from detectron2.utils.events import EventStorage, get_event_storage
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


# Test-time sizes the stock leg takes from Detectron2's defaults (sized for COCO's 80 classes)
# rather than from the config: the project's configs size them for a few fractures per image.
STOCK_TEST_KEYS = (
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "TEST.DETECTIONS_PER_IMAGE",
)


def stock_config(cfg):
    """The stock Detectron2 leg: the same config with the project's speed switches off and
    Detectron2's default test-time sizes (:data:`STOCK_TEST_KEYS`)."""
    from detectron2.config import get_cfg

    stock, d2 = cfg.clone(), get_cfg()
    stock.defrost()
    for key in STOCK_TEST_KEYS:
        node, d2_node = stock, d2
        *path, leaf = key.split(".")
        for p in path:
            node, d2_node = node[p], d2_node[p]
        node[leaf] = d2_node[leaf]
    stock.FRACTURE.FAST.CHANNELS_LAST = False
    stock.FRACTURE.FAST.COMPILE_BACKBONE = False
    stock.FRACTURE.FAST.SYNC_FREE_SAMPLING = False
    stock.FRACTURE.FAST.BATCHED_HEADS = False
    stock.FRACTURE.FAST.MATRIX_NMS = False
    stock.FRACTURE.FAST.STATIC_INFERENCE = False
    stock.FRACTURE.FAST.METRICS_PERIOD = 1
    stock.FRACTURE.FAST.FUSED_GRAD_CLIP = False  # DefaultTrainer clips its own way anyway
    stock.FRACTURE.FAST.INFERENCE_DTYPE = "float32"
    stock.freeze()
    return stock


def leg_flags(name: str, cfg) -> None:
    """Process-wide backend flags for one leg before its timed block: the project's from its
    config (:func:`~fracture_d2.engine.speed.apply_backend_flags`); PyTorch's defaults for the
    stock leg (TF32 for cuDNN convolutions, not for matmuls), so that building the project's
    Trainer in the same process does not speed up the stock leg."""
    from fracture_d2.engine.speed import apply_backend_flags

    if name == "project":
        apply_backend_flags(cfg)
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = True


# Operator names that wait for the device (host-device synchronisations) in a profile.
SYNC_OPS = ("aten::item", "aten::nonzero", "aten::_local_scalar_dense", "cudaStreamSynchronize")


class OpCounter(TorchDispatchMode):
    """Counts the ATen operators dispatched (backward included) while active. Each one costs
    the host its dispatch and, on a GPU, usually a kernel launch: when the GPU waits for the host
    (Faster R-CNN at batch 16 on an H200, README "Speed"), fewer operators per step is faster."""

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


def profile_steps(trainer, steps: int, first_iter: int, out_file: str) -> dict:
    """Profile ``steps`` training steps of ``trainer`` with ``torch.profiler``; write the top
    operators (by device time on CUDA, CPU time otherwise) to ``out_file``; return per-step
    counts of the synchronising operators in :data:`SYNC_OPS` and, from ``steps`` more steps,
    of all dispatched operators (:class:`OpCounter`)."""
    from torch.profiler import ProfilerActivity, profile

    from fracture_d2.utils_io import atomic_open

    cuda = next(trainer.model.parameters()).is_cuda
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    storage = get_event_storage()
    with profile(activities=activities) as prof:
        for i in range(steps):
            storage.iter = trainer.iter = first_iter + i
            trainer.run_step()
        if cuda:
            torch.cuda.synchronize()
    avg = prof.key_averages()
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    with atomic_open(out_file, "w", encoding="utf-8") as f:
        f.write(avg.table(sort_by=sort, row_limit=40) + "\n")
    counts = {e.key: e.count / steps for e in avg if e.key in SYNC_OPS}
    busy = device_busy_us(prof.events()) if cuda else None

    def more_steps():
        for i in range(steps):
            storage.iter = trainer.iter = first_iter + steps + i
            trainer.run_step()

    ops = count_ops(more_steps)
    return {
        "steps": steps,
        "table": out_file,
        "sync_ops_per_step": counts,
        "ops_per_step": None if ops is None else ops / steps,
        "device_busy_ms_per_step": None if busy is None else busy / 1000 / steps,
    }


def benchmark_training(
    cfg,
    iters: int = 20,
    warmup: int = 5,
    rounds: int = 3,
    profile: int = 0,
    profile_out: str | None = None,
) -> dict:
    """Interleave timed blocks of ``iters`` training steps of both trainers.

    Args:
        cfg: the project's config (frozen); the stock trainer gets :func:`stock_config`.
        iters: steps per timed block; warmup: untimed steps per trainer first; rounds: blocks
            per trainer (stock, project, stock, project, ...).
        profile, profile_out: after the timed blocks, profile this many steps of each trainer
            and write the operator tables to ``profile_out`` + ``.{stock,project}.txt``.

    Returns:
        ``{"stock": {...}, "project": {...}, "ratio": project img/s / stock img/s}``.
    """
    from fracture_d2.engine.trainer import Trainer

    device = cfg.MODEL.DEVICE
    batch = cfg.SOLVER.IMS_PER_BATCH
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for name, klass, c in (
            ("stock", DefaultTrainer, stock_config(cfg)),
            ("project", Trainer, cfg),
        ):
            c = c.clone()
            c.defrost()
            c.OUTPUT_DIR = f"{tmp}/{name}"
            c.freeze()
            trainers[name] = klass(c)
        timings = {n: Timing(n) for n in trainers}
        with EventStorage(0) as storage:
            for name, tr in trainers.items():
                leg_flags(name, tr.cfg)
                tr._trainer.model.train()
                for i in range(warmup):
                    storage.iter = tr._trainer.iter = i
                    tr._trainer.run_step()
                if device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
            for r in range(rounds):
                for name, tr in trainers.items():
                    if device.startswith("cuda"):
                        torch.cuda.reset_peak_memory_stats()
                    leg_flags(name, tr.cfg)
                    sync_device(device)
                    t = time.perf_counter()
                    for i in range(iters):
                        storage.iter = tr._trainer.iter = warmup + r * iters + i
                        tr._trainer.run_step()
                    sync_device(device)
                    timings[name].seconds.append(time.perf_counter() - t)
                    timings[name].items.append(iters * batch)
                    mem = peak_gpu_mem(device)
                    if mem is not None:
                        timings[name].peak_gpu_mem_gib = max(
                            timings[name].peak_gpu_mem_gib or 0, mem
                        )
                    logger.info(
                        f"train round {r} {name}: "
                        f"{iters * batch / timings[name].seconds[-1]:.2f} img/s"
                    )
            profiles = {}
            if profile > 0:
                for name, tr in trainers.items():
                    leg_flags(name, tr.cfg)
                    first = warmup + rounds * iters
                    profiles[name] = profile_steps(
                        tr._trainer, profile, first, f"{profile_out}.{name}.txt"
                    )
    out = {n: t.summary() for n, t in timings.items()}
    if profiles:
        out["profile"] = profiles
    out["ratio"] = timings["project"].per_second / timings["stock"].per_second
    out["process_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def benchmark_loader(cfg, batches: int = 30, warmup: int = 3, rounds: int = 2) -> dict:
    """Images per second each training data loader delivers on its own, without a model:
    Detectron2's (``DefaultTrainer.build_train_loader``: ``DatasetMapper``, PIL decoding) and
    the project's (:class:`~fracture_d2.engine.Trainer`: ``RadiographMapper``, OpenCV), on the
    same config, data and ``DATALOADER.NUM_WORKERS``. A training step can go no faster than
    its loader, so the project's training img/s on a GPU is only meaningful where its loader
    delivers more.

    Each round builds a loader, takes ``warmup`` batches (workers started, their prefetched
    images drained: Detectron2 batches in the main process, so a worker queue holds images, not
    batches), times ``batches`` more and shuts the workers down before the other loader's turn
    (stock, project, stock, ...).
    """
    from fracture_d2.engine.trainer import Trainer

    stock_cfg = stock_config(cfg)
    builders = {
        "stock": lambda: DefaultTrainer.build_train_loader(stock_cfg),
        "project": lambda: Trainer.build_train_loader(cfg),
    }
    timings = {n: Timing(n) for n in builders}
    for r in range(rounds):
        for name, build in builders.items():
            loader = build()
            it = iter(loader)
            for _ in range(warmup):
                next(it)
            t = time.perf_counter()
            images = sum(len(next(it)) for _ in range(batches))
            timings[name].seconds.append(time.perf_counter() - t)
            timings[name].items.append(images)
            del it, loader  # the workers stop before the other loader is timed
            logger.info(f"loader round {r} {name}: {timings[name].per_second:.1f} img/s")
    out = {n: t.summary() for n, t in timings.items()}
    out["workers"] = cfg.DATALOADER.NUM_WORKERS
    out["ratio"] = timings["project"].per_second / timings["stock"].per_second
    return out


def benchmark_grad_clip(cfg, calls: int = 20, rounds: int = 2, seed: int = 0) -> dict:
    """Detectron2's per-parameter gradient clipping (its own clipper, called per parameter tensor
    as its optimizer does) against :func:`~.grad_clip.clip_per_parameter_`
    (``FRACTURE.FAST.FUSED_GRAD_CLIP``) on the config's model: milliseconds per optimizer step
    (median of ``calls`` per round, interleaved), operators dispatched per step, and whether
    both give the same gradients from the same random ones. ``SOLVER.CLIP_GRADIENTS``' type and
    value are used whether or not the config enables clipping (``enabled`` says)."""
    from detectron2.modeling import build_model
    from detectron2.solver.build import _create_gradient_clipper

    from .grad_clip import clip_per_parameter_

    clip = cfg.SOLVER.CLIP_GRADIENTS
    device = cfg.MODEL.DEVICE
    torch.manual_seed(seed)
    params = [p for p in build_model(cfg).parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    start = [p.grad.clone() for p in params]
    per_parameter = _create_gradient_clipper(clip)
    legs = {
        "stock": lambda: [per_parameter(p) for p in params],
        "project": lambda: clip_per_parameter_(
            params, clip.CLIP_TYPE, clip.CLIP_VALUE, clip.NORM_TYPE
        ),
    }
    after = {}
    for name, fn in legs.items():  # the same gradients from the same start
        for p, g in zip(params, start, strict=True):
            p.grad.copy_(g)
        fn()
        after[name] = [p.grad.clone() for p in params]
    same = all(torch.equal(a, b) for a, b in zip(after["stock"], after["project"], strict=True))
    ms = {name: [] for name in legs}
    for _ in range(rounds):
        for name, fn in legs.items():
            ms[name].append(1e3 * median_latency(lambda _x, f=fn: f(), [None] * calls, device))
    out = {
        name: {"ms_per_step": float(np.median(ms[name])), "ops_per_step": count_ops(fn)}
        for name, fn in legs.items()
    }
    out.update(
        enabled=bool(clip.ENABLED),
        clip_type=clip.CLIP_TYPE,
        parameter_tensors=len(params),
        same_gradients=same,
        time_ratio=out["project"]["ms_per_step"] / out["stock"]["ms_per_step"],
    )
    return out


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
