"""Start tools/serve.py as a real process and drive it from concurrent HTTP clients.

Used by tools/benchmark_serve.py and the tests; nothing here knows about models.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server_process(args: list[str], timeout: float = 180.0, env: dict | None = None):
    """Run ``tools/serve.py ARGS --port P`` until the block ends; yields its base URL once
    ``/readyz`` answers 200.

    Raises:
        RuntimeError: the server exited or was not ready within ``timeout`` (with its log).
    """
    port = free_port()
    cmd = [sys.executable, str(REPO / "tools" / "serve.py"), "--port", str(port), *args]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    url = f"http://127.0.0.1:{port}"
    # The log goes to a temp file, not a pipe: a pipe nobody reads would block the server.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=log)
        try:
            _wait_ready(proc, url, timeout, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc, url: str, timeout: float, log) -> None:
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None or time.monotonic() > end:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            state = f"exited {proc.returncode}" if proc.poll() is not None else "not ready"
            raise RuntimeError(f"tools/serve.py {state} after {timeout} s at most:\n{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)


async def _client(http, uploads, first: int, step: int, stop_at: float, records: list) -> None:
    k = first
    while time.monotonic() < stop_at:
        name, data = uploads[k % len(uploads)]
        k += step
        t0 = time.perf_counter()
        try:
            r = await http.post("/v1/predict", files={"file": (name, data)})
            status = r.status_code
            batch = r.json()["timing"]["batch_size"] if status == 200 else None
        except httpx.HTTPError as e:
            status, batch = type(e).__name__, None
        records.append((time.perf_counter() - t0, status, batch))


async def _drive(url, uploads, clients, seconds, warmup, headers) -> tuple[list, float]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits, headers=headers) as http:
        # Warm-up: every client's connection opened and a few batches run, not timed.
        end = time.monotonic() + warmup
        await asyncio.gather(*(_client(http, uploads, c, clients, end, []) for c in range(clients)))
        records: list = []
        t0 = time.monotonic()
        stop_at = t0 + seconds
        await asyncio.gather(
            *(_client(http, uploads, c, clients, stop_at, records) for c in range(clients))
        )
        return records, time.monotonic() - t0


def drive(
    url: str,
    uploads: list,
    clients: int,
    seconds: float,
    warmup: float = 3.0,
    headers: dict | None = None,
) -> dict:
    """POST ``uploads`` ((name, bytes) pairs, round robin) from ``clients`` concurrent clients
    for ``seconds`` (after ``warmup`` seconds); requests still running at the end finish and
    count; ``headers`` go with every request (e.g. a bearer token). Returns requests/s, latency
    percentiles (ms), errors by status and mean batch size.
    """
    records, elapsed = asyncio.run(_drive(url, uploads, clients, seconds, warmup, headers))
    latency = np.array([r[0] for r in records]) * 1000
    ok = [r for r in records if r[1] == 200]
    errors = Counter(str(r[1]) for r in records if r[1] != 200)
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(records),
        "errors": sum(errors.values()),
        "errors_by_status": dict(errors),
        "requests_per_second": round(len(ok) / elapsed, 3),
        "images_per_second": round(len(ok) / elapsed, 3),  # one image per request
        "latency_ms": {
            f"p{q}": round(float(np.percentile(latency, q)), 1) if len(latency) else None
            for q in (50, 95, 99)
        },
        "mean_batch_size": round(float(np.mean([r[2] for r in ok])), 2) if ok else None,
    }
