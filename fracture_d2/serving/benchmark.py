"""Served vs offline throughput on the same images and config, in one run (the body of
tools/benchmark_serve.py).

Three legs: (1) offline, ``predict_files`` as ``tools/predict.py --no-overlays`` runs it
(reader processes + batched predictor); (2) the service with batching (``--max-batch N
--max-wait-ms T``) and (3) with ``--max-batch 1``, each a real ``tools/serve.py`` process driven
by K concurrent loopback clients for S seconds. The legs run one after another, never at once,
and the three are repeated for several rounds: on a machine shared with other jobs, the load
changes by the minute, and legs of the same round see about the same load.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from .loadtest import drive, server_process

logger = logging.getLogger(__name__)

GOAL_SERVED_VS_OFFLINE = 0.8  # served img/s >= 80% of offline img/s (issue 19)


def offline_throughput(predictor, files: list[Path], batch_size: int, num_workers: int) -> dict:
    """Images per second of tools/predict.py's code path (overlays off) over ``files``."""
    from fracture_d2.inference.loading import InputList
    from fracture_d2.inference.run import predict_files

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
    }


def _median(legs: list[dict], key: str) -> float:
    return round(statistics.median(leg[key] for leg in legs), 3)


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
    rounds: int = 3,
) -> dict:
    """``rounds`` x (offline, served batched, served batch-1); returns every leg, the medians,
    the ratios (of medians, and per round) and whether each goal was met."""
    from fracture_d2.inference import BatchPredictor, load_image

    uploads = [(f.name, f.read_bytes()) for f in files]
    base = ["--config-file", config_file, "--log-level", "warning"]
    base += ["--queue-size", str(max(64, 2 * clients))]
    servers = {"batched": (max_batch, max_wait_ms), "batch1": (1, 0.0)}
    predictor = BatchPredictor(cfg)
    predictor([load_image(files[0])] * batch_size)  # warm-up, as the server's
    legs = {"offline": [], "batched": [], "batch1": []}
    with ExitStack() as stack:  # both servers up, idle while the other legs run
        urls = {
            name: stack.enter_context(
                server_process(base + ["--max-batch", str(b), "--max-wait-ms", str(w), *opts])
            )
            for name, (b, w) in servers.items()
        }
        for r in range(rounds):
            logger.info("round %d/%d: offline, %d images", r + 1, rounds, len(files))
            leg = offline_throughput(predictor, files, batch_size, num_workers)
            legs["offline"].append(leg | {"load": os.getloadavg()[0]})
            for name, url in urls.items():
                logger.info("round %d/%d: served %s, %d clients", r + 1, rounds, name, clients)
                legs[name].append(
                    drive(url, uploads, clients, seconds) | {"load": os.getloadavg()[0]}
                )
    return _summary(legs, servers, clients, seconds, batch_size, num_workers, len(files))


def _summary(legs, servers, clients, seconds, batch_size, num_workers, n_images) -> dict:
    offline = _median(legs["offline"], "images_per_second")
    batched = _median(legs["batched"], "images_per_second")
    single = _median(legs["batch1"], "images_per_second")
    per_round = [
        {
            "served_batched_vs_offline": round(b["images_per_second"] / o["images_per_second"], 3),
            "batched_vs_batch1": round(b["images_per_second"] / s["images_per_second"], 3),
        }
        for o, b, s in zip(legs["offline"], legs["batched"], legs["batch1"], strict=True)
    ]
    errors = sum(leg["errors"] for name in servers for leg in legs[name])
    return {
        "images": n_images,
        "clients": clients,
        "seconds_per_leg": seconds,
        "offline_settings": {"batch_size": batch_size, "num_workers": num_workers},
        "servers": {n: {"max_batch": b, "max_wait_ms": w} for n, (b, w) in servers.items()},
        "legs": legs,
        "median_images_per_second": {"offline": offline, "batched": batched, "batch1": single},
        "ratios": {
            "served_batched_vs_offline": round(batched / offline, 3),
            "served_batch1_vs_offline": round(single / offline, 3),
            "batched_vs_batch1": round(batched / single, 3) if single else None,
            "per_round": per_round,
        },
        "goals": {
            f"zero_errors_at_{clients}_clients": errors == 0,
            "served_at_least_80pct_of_offline": batched >= GOAL_SERVED_VS_OFFLINE * offline,
            "batching_raises_throughput": batched > single,
        },
    }
