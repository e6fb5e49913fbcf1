"""Prometheus metrics of the service (``GET /metrics``): requests, errors by kind, latency,
batch sizes and queue depth, in a registry of its own (several apps in one process, as in
the tests, do not collide)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Paths reported as themselves; anything else is "other" (so a scanner's random URLs do not
# create one time series each).
KNOWN_PATHS = ("/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics", "/docs")
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The service's metrics (see the module docstring)."""

    def __init__(self, max_batch: int):
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "fracture_d2_requests", "HTTP requests", ["path", "status"], registry=r
        )
        self.errors = Counter("fracture_d2_errors", "Error answers by kind", ["kind"], registry=r)
        self.latency = Histogram(
            "fracture_d2_request_seconds",
            "Request latency, receiving the upload to sending the answer",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        sizes = sorted({1, 2, 4, 8, 16, 32, 64, max_batch})
        self.batch_size = Histogram(
            "fracture_d2_batch_size", "Images per forward pass", buckets=sizes, registry=r
        )
        self.batch_seconds = Histogram(
            "fracture_d2_batch_seconds",
            "Forward pass time per batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "fracture_d2_queue_depth", "Images waiting for the model", registry=r
        )

    def on_batch(self, size: int, seconds: float) -> None:
        """Record one forward pass (called by the batching thread)."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting and timing every HTTP request by path and status.

    Args:
        app: the wrapped ASGI app.
        metrics: where to count.
    """

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        status = 500  # if the app fails before answering

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)
            self.metrics.requests.labels(path, str(status)).inc()
