"""Server-side batching: requests wait (briefly) to share one forward pass.

One worker thread owns the model: it takes the oldest image, waits until ``max_batch``
images are there or the oldest has waited ``max_wait_ms``, runs them as one batch and hands
each request its own result through a ``concurrent.futures.Future`` (awaitable from the event
loop with ``asyncio.wrap_future``). The event loop never runs the model, so health checks and
uploads are served while a batch computes. The queue is bounded: a full queue refuses at once
(:class:`QueueFull`) rather than letting latency grow without limit.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds ``queue_size`` images already; ``retry_after`` is a guess in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"queue full, retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class BatchResult:
    """One image's output and how it was computed."""

    output: object
    batch_size: int
    queue_seconds: float
    inference_seconds: float


@dataclass
class _Job:
    item: object
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class BatchQueue:
    """A bounded queue in front of a batch function, run by one worker thread.

    Args:
        predict: list of items -> list of outputs, same length and order.
        max_batch: items per call at most.
        max_wait_ms: how long the oldest item waits for more before its batch runs.
        queue_size: items waiting at most (the batch being computed does not count).
        on_batch: called with (batch size, seconds) after each batch (metrics).
    """

    def __init__(
        self,
        predict: Callable[[list], list],
        max_batch: int = 8,
        max_wait_ms: float = 10.0,
        queue_size: int = 64,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.predict, self.max_batch, self.queue_size = predict, max_batch, queue_size
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._jobs: queue.Queue = queue.Queue()  # bounded by submit(); None stops the worker
        self._thread: threading.Thread | None = None
        self._seconds_per_item = 0.1  # running estimate, for Retry-After

    def start(self) -> BatchQueue:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name="fracture_d2-batcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Let the worker finish the batch it computes, then end it (waiting items fail)."""
        self._jobs.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def depth(self) -> int:
        """Items waiting for the model."""
        return self._jobs.qsize()

    def submit(self, item) -> Future:
        """Queue one item; its future gets a :class:`BatchResult` or the batch's exception.

        Raises:
            QueueFull: ``queue_size`` items are waiting already.
        """
        waiting = self._jobs.qsize()
        if waiting >= self.queue_size:
            raise QueueFull(max(1, math.ceil(waiting * self._seconds_per_item)))
        job = _Job(item)
        self._jobs.put(job)
        return job.future

    def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        batch, deadline = [first], first.enqueued + self.max_wait
        while len(batch) < self.max_batch:
            try:
                job = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                break
            batch, stopping = self._collect(first)
            # A request whose client went away was cancelled: do not compute it.
            live = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if live:
                self._run_batch(live)
        while not self._jobs.empty():  # fail what is left rather than leave callers hanging
            job = self._jobs.get_nowait()
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the service is shutting down"))

    def _run_batch(self, batch: list[_Job]) -> None:
        start = time.monotonic()
        try:
            outputs = list(self.predict([j.item for j in batch]))
            if len(outputs) != len(batch):
                raise RuntimeError(f"{len(outputs)} outputs for a batch of {len(batch)}")
        except Exception as e:  # the callers get the error; the worker keeps serving
            logger.exception("batch of %d failed", len(batch))
            for j in batch:
                j.future.set_exception(e)
            return
        seconds = time.monotonic() - start
        self._seconds_per_item = 0.8 * self._seconds_per_item + 0.2 * seconds / len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch), seconds)
        for j, out in zip(batch, outputs, strict=True):
            j.future.set_result(BatchResult(out, len(batch), start - j.enqueued, seconds))
