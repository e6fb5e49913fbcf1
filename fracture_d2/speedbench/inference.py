"""Inference side of the benchmark: ``DefaultPredictor`` (batch 1) and a batched stock forward
against the project's :class:`BatchPredictor`, interleaved; and bbox AP of both paths."""

from __future__ import annotations

import functools
import json
import logging
import tempfile

import numpy as np
import torch

from .legs import leg_flags, stock_config
from .measure import Timing, count_ops, median_latency, peak_gpu_mem, sync_counts, time_calls

logger = logging.getLogger("fracture_d2.benchmark")


def _stock_inputs(cfg, bgr: np.ndarray) -> dict:
    """Exactly DefaultPredictor's preprocessing of one BGR image."""
    from detectron2.data import transforms as T

    aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    h, w = bgr.shape[:2]
    image = aug.get_transform(bgr).apply_image(bgr)
    return {
        "image": torch.as_tensor(image.astype("float32").transpose(2, 0, 1)),
        "height": h,
        "width": w,
    }


class StockInference:
    """Detectron2's ``DefaultPredictor`` (batch 1) and the same preprocessing batched."""

    def __init__(self, cfg):
        from detectron2.engine import DefaultPredictor

        self.cfg = cfg
        self.predictor = DefaultPredictor(cfg)

    def one(self, gray: np.ndarray):
        return self.predictor(np.repeat(gray[:, :, None], 3, axis=2))["instances"]

    def batch(self, grays: list) -> list:
        inputs = [_stock_inputs(self.cfg, np.repeat(g[:, :, None], 3, axis=2)) for g in grays]
        with torch.no_grad():
            return [o["instances"] for o in self.predictor.model(inputs)]


class ProjectInference:
    """The project's batched predictor (speed switches, inference dtype, test-time sizes)."""

    def __init__(self, cfg):
        from fracture_d2.inference.predictor import BatchPredictor

        self.predictor = BatchPredictor(cfg)

    def one(self, gray: np.ndarray):
        return self.predictor([gray])[0]

    def batch(self, grays: list) -> list:
        return self.predictor(grays)


def benchmark_inference(
    cfg, grays: list, batch_size: int = 8, rounds: int = 3, profile: int = 0
) -> dict:
    """Batch-1 latency and batch-N throughput, stock vs project, interleaved per round;
    ``profile``: also the host-device waits per batch-1 image over that many images
    (``torch.profiler``: CUDA stream syncs on a GPU, ``.item()``/``nonzero`` on a CPU)."""
    device = cfg.MODEL.DEVICE
    paths = {"stock": StockInference(stock_config(cfg)), "project": ProjectInference(cfg)}
    legs = {"stock": stock_config(cfg), "project": cfg}
    for name, p in paths.items():  # warm-up (allocator, oneDNN/cuDNN kernel choice)
        leg_flags(name, legs[name])
        p.one(grays[0])
        p.batch(grays[:batch_size])
    lat = {n: [] for n in paths}
    thr = {n: Timing(n) for n in paths}
    batches = [grays[i : i + batch_size] for i in range(0, len(grays), batch_size)]
    for r in range(rounds):
        for name, p in paths.items():
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            leg_flags(name, legs[name])
            lat[name].append(median_latency(p.one, grays, device))
            seconds, _ = time_calls(p.batch, batches, 0, device)
            thr[name].seconds.append(seconds)
            thr[name].items.append(len(grays))
            mem = peak_gpu_mem(device)
            if mem is not None:
                thr[name].peak_gpu_mem_gib = max(thr[name].peak_gpu_mem_gib or 0, mem)
            logger.info(
                f"infer round {r} {name}: batch-1 {lat[name][-1] * 1000:.1f} ms, "
                f"batch-{batch_size} {len(grays) / seconds:.2f} img/s"
            )
    out = {}
    for name, p in paths.items():
        leg_flags(name, legs[name])
        out[name] = {
            "batch1_latency_ms": 1000 * float(np.median(lat[name])),
            f"batch{batch_size}_images_per_second": thr[name].per_second,
            "peak_gpu_mem_gib": thr[name].peak_gpu_mem_gib,
            # dispatched ATen operators per image; not for compiled code (a dispatch mode
            # would make it trace and compile again, and the count would not be its launches)
            "batch1_ops": (
                None if legs[name].FRACTURE.FAST.COMPILE_BACKBONE else count_ops(p.one, grays[0])
            ),
        }
        if profile > 0:
            images = iter(grays * (profile // len(grays) + 1))
            one = functools.partial(lambda path, it: path.one(next(it)), p, images)
            counts, busy = sync_counts(one, profile, device.startswith("cuda"))
            out[name]["batch1_sync_ops"] = counts
            out[name]["batch1_device_busy_ms"] = busy
    out["latency_ratio"] = out["project"]["batch1_latency_ms"] / out["stock"]["batch1_latency_ms"]
    out["throughput_ratio"] = (
        out["project"][f"batch{batch_size}_images_per_second"]
        / out["stock"][f"batch{batch_size}_images_per_second"]
    )
    return out


def accuracy(cfg, dataset: str, batch_size: int = 8) -> dict:
    """bbox AP/AP50 of stock and project inference of the same weights on ``dataset``."""
    from detectron2.data import DatasetCatalog

    from fracture_d2.data.image_io import read_radiograph
    from fracture_d2.evaluation.runs import evaluate_files
    from fracture_d2.evaluation.suite import EvalOptions
    from fracture_d2.inference.predictor import instances_to_results

    dicts = DatasetCatalog.get(dataset)
    out = {}
    for name, p in (
        ("stock", StockInference(stock_config(cfg))),
        ("project", ProjectInference(cfg)),
    ):
        results = []
        for i in range(0, len(dicts), batch_size):
            chunk = dicts[i : i + batch_size]
            for d, inst in zip(
                chunk, p.batch([read_radiograph(d["file_name"]) for d in chunk]), strict=True
            ):
                results += instances_to_results(inst.to("cpu"), d["image_id"])
        with tempfile.TemporaryDirectory() as tmp:
            with open(f"{tmp}/p.json", "w") as f:
                json.dump(results, f)
            metrics, _ = evaluate_files(
                dataset, f"{tmp}/p.json", f"{tmp}/eval", None, EvalOptions(bootstrap=0)
            )
        coco = metrics["coco"]["overall"]
        out[name] = {
            "AP": coco.get("AP"),
            "AP50": coco.get("AP50"),
            "froc": metrics.get("froc", {}).get("score"),
        }
    return out
