"""Training speed side by side: stock Detectron2 vs the project's path, in one process.

Training: Detectron2's ``DefaultTrainer`` (stock ``DatasetMapper``, ``SimpleTrainer`` /
``AMPTrainer``) and the project's :class:`~fracture_d2.engine.Trainer` are built on the same
config, data and device, warmed up, then timed in interleaved blocks of iterations, so drifts of
the machine (thermal, other load) hit both alike. Inference: see
:mod:`.inference`.
"""

from __future__ import annotations

import logging
import resource
import tempfile
import time

import numpy as np
import torch
from detectron2.engine import DefaultTrainer
from detectron2.utils.events import EventStorage, get_event_storage

from .legs import leg_flags, stock_config
from .measure import (
    SYNC_OPS,
    Timing,
    count_ops,
    device_busy_us,
    median_latency,
    peak_gpu_mem,
    sync_device,
)

logger = logging.getLogger("fracture_d2.benchmark")


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
    as its optimizer does) against :func:`fracture_d2.fast.grad_clip.clip_per_parameter_`
    (``FRACTURE.FAST.FUSED_GRAD_CLIP``) on the config's model: milliseconds per optimizer step
    (median of ``calls`` per round, interleaved), operators dispatched per step, and whether
    both give the same gradients from the same random ones. ``SOLVER.CLIP_GRADIENTS``' type and
    value are used whether or not the config enables clipping (``enabled`` says)."""
    from detectron2.modeling import build_model
    from detectron2.solver.build import _create_gradient_clipper

    from fracture_d2.fast.grad_clip import clip_per_parameter_

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
