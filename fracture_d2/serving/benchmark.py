"""Served vs offline throughput on the same images and config, in one run (the body of
tools/benchmark_serve.py).

Phases, one after another so they do not share the CPU: (1) offline, ``predict_files`` as
``tools/predict.py --no-overlays`` runs it (reader processes + batched predictor); (2) the
service with batching (``--max-batch N --max-wait-ms T``) and (3) with ``--max-batch 1``, each
a real ``tools/serve.py`` process driven by K concurrent loopback clients for S seconds.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from .loadtest import drive, server_process

logger = logging.getLogger(__name__)

GOAL_SERVED_VS_OFFLINE = 0.8  # served img/s >= 80% of offline img/s (issue 19)


def offline_throughput(cfg, files: list[Path], batch_size: int, num_workers: int) -> dict:
    """Images per second of tools/predict.py's code path (overlays off) over ``files``."""
    from fracture_d2.inference import BatchPredictor, load_image
    from fracture_d2.inference.loading import InputList
    from fracture_d2.inference.run import predict_files

    predictor = BatchPredictor(cfg)
    predictor([load_image(files[0])] * batch_size)  # warm-up, as the server's
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run = predict_files(
            InputList(files=list(files)),
            predictor,
            out,
            batch_size=batch_size,
            num_workers=num_workers,
            overlays=False,
        )
        seconds = time.perf_counter() - t0
    return {
        "images": run.n_images,
        "skipped": len(run.skipped),
        "seconds": round(seconds, 2),
        "images_per_second": round(run.n_images / seconds, 3),
        "batch_size": batch_size,
        "num_workers": num_workers,
    }


def served_throughput(server_args: list[str], uploads: list, clients: int, seconds: float) -> dict:
    """Start tools/serve.py with ``server_args`` and drive it (:func:`.loadtest.drive`)."""
    with server_process(server_args) as url:
        return drive(url, uploads, clients, seconds)


def run_benchmark(
    cfg,
    config_file: str,
    opts: list[str],
    files: list[Path],
    clients: int = 16,
    seconds: float = 30.0,
    max_batch: int = 8,
    max_wait_ms: float = 10.0,
    batch_size: int = 4,
    num_workers: int = 2,
) -> dict:
    """All three phases; returns the report (numbers, ratios, goals met or missed)."""
    uploads = [(f.name, f.read_bytes()) for f in files]
    base = ["--config-file", config_file, "--log-level", "warning"]
    base += ["--queue-size", str(max(64, 2 * clients))]
    report = {"images": len(files), "clients": clients, "seconds": seconds, "load": {}}
    report["load"]["before"] = os.getloadavg()
    logger.info("offline: %d images, batch %d", len(files), batch_size)
    report["offline"] = offline_throughput(cfg, files, batch_size, num_workers)
    report["load"]["after_offline"] = os.getloadavg()
    served = {}
    for name, batch, wait in (("batched", max_batch, max_wait_ms), ("batch1", 1, 0.0)):
        logger.info("served %s: max batch %d, wait %.0f ms, %d clients", name, batch, wait, clients)
        args = base + ["--max-batch", str(batch), "--max-wait-ms", str(wait), *opts]
        served[name] = {"max_batch": batch, "max_wait_ms": wait}
        served[name] |= served_throughput(args, uploads, clients, seconds)
        report["load"][f"after_{name}"] = os.getloadavg()
    report["served"] = served
    offline = report["offline"]["images_per_second"]
    batched, single = served["batched"]["images_per_second"], served["batch1"]["images_per_second"]
    report["ratios"] = {
        "served_batched_vs_offline": round(batched / offline, 3),
        "served_batch1_vs_offline": round(single / offline, 3),
        "batched_vs_batch1": round(batched / single, 3) if single else None,
    }
    report["goals"] = {
        f"zero_errors_at_{clients}_clients": served["batched"]["errors"] == 0
        and served["batch1"]["errors"] == 0,
        "served_at_least_80pct_of_offline": batched >= GOAL_SERVED_VS_OFFLINE * offline,
        "batching_raises_throughput": batched > single,
    }
    return report
