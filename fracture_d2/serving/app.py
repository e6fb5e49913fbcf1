"""The REST service: FastAPI routes around a model the caller loads (no model code here).

``create_app(loader, settings)`` returns an app that starts answering ``/healthz`` at once,
loads the model with ``loader()`` in a background thread, runs one warm-up image, then opens
``/readyz`` and ``/v1/*``. Uploads are decoded in Starlette's thread pool and the model runs in
the batching thread (:mod:`.batching`), so the event loop only moves bytes.
"""

import asyncio
import base64
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated

import cv2
import numpy as np
from fastapi import Depends, FastAPI, File, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from fracture_d2.inference.results import draw_prediction, image_prediction

from .auth import token_checker
from .batching import BatchQueue, BatchResult, QueueFull
from .errors import ServiceError, install_error_handlers, too_large_detail
from .limits import BodyLimit
from .metrics import Metrics, RequestMetrics
from .schemas import ErrorBody, ModelIdentity, Prediction, Readiness
from .settings import MULTIPART_SLACK, LoadedModel, ServeSettings
from .upload import DecodedUpload, decode_upload

logger = logging.getLogger(__name__)
ERRORS = {c: {"model": ErrorBody} for c in (400, 401, 413, 415, 422, 500, 503)}


class ServiceState:
    """The model, its queue and whether they are ready (shared with the loading thread)."""

    def __init__(self):
        self.model: LoadedModel | None = None
        self.queue: BatchQueue | None = None
        self.error: str | None = None
        self.ready = threading.Event()

    def load(self, loader: Callable[[], LoadedModel], settings: ServeSettings, metrics) -> None:
        """Load the model, run one warm-up image, start the batching thread."""
        try:
            t0 = time.perf_counter()
            model = loader()
            model.predict([np.full(model.warmup_shape, 128, np.uint8)])
            self.queue = BatchQueue(
                model.predict,
                settings.max_batch,
                settings.max_wait_ms,
                settings.queue_size,
                metrics.on_batch,
            ).start()
            self.model = model
            self.ready.set()
            logger.info("model ready in %.1f s", time.perf_counter() - t0)
        except Exception as e:  # reported by /readyz; the process keeps answering
            logger.exception("loading the model failed")
            self.error = f"{type(e).__name__}: {e}"

    async def infer(self, gray: np.ndarray, name: str) -> BatchResult:
        """Queue one image for the batching thread and wait for its result (503 if full)."""
        try:
            future = self.queue.submit(gray)
        except QueueFull as e:
            raise ServiceError(
                503,
                "queue_full",
                f"{name}: {self.queue.queue_size} images are waiting already; retry later",
                {"Retry-After": str(e.retry_after)},
            ) from None
        return await asyncio.wrap_future(future)

    def require_ready(self) -> None:
        """Raise 503 (with Retry-After) until the model is ready."""
        if not self.ready.is_set():
            detail = f"model failed to load: {self.error}" if self.error else "loading the model"
            raise ServiceError(503, "not_ready", detail, {"Retry-After": "5"})


async def _read_upload(file: UploadFile, name: str, settings: ServeSettings) -> DecodedUpload:
    data = await file.read()
    if len(data) > settings.max_upload_bytes:
        raise ServiceError(
            413,
            "too_large",
            f"{name}: {len(data)} bytes is over the upload limit of {settings.max_upload_bytes} "
            "bytes (start the server with a larger --max-upload-mb)",
        )
    return await run_in_threadpool(decode_upload, data, name, settings.max_pixels)


def _overlay_png(gray: np.ndarray, pred, score_method: str) -> str:
    """The image with its boxes, as base64 PNG."""
    rgb = draw_prediction(gray, pred, score_method)
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of the overlay failed")
    return base64.b64encode(data.tobytes()).decode("ascii")


def _client_name(file: UploadFile) -> str:
    # Only ever shown back (messages, file_name), never used as a path; keep it short.
    return os.path.basename(file.filename or "")[:200] or "upload"


def create_app(loader: Callable[[], LoadedModel], settings: ServeSettings) -> FastAPI:
    """The service's ASGI app.

    Args:
        loader: builds the model (called once, in a background thread).
        settings: batching, limits, operating point, token.
    """
    state, metrics = ServiceState(), Metrics(settings.max_batch)
    metrics.queue_depth.set_function(lambda: state.queue.depth() if state.queue else 0)

    @asynccontextmanager
    async def lifespan(_app):
        threading.Thread(
            target=state.load, args=(loader, settings, metrics), name="fracture_d2-load"
        ).start()
        yield
        if state.queue is not None:
            state.queue.stop()

    app = FastAPI(
        title="fracture_d2",
        summary="Fracture detection in radiographs (PNG, JPEG, DICOM)",
        lifespan=lifespan,
    )
    app.state.service = state
    answer = install_error_handlers(
        app, lambda kind: metrics.errors.labels(kind).inc(), settings.max_upload_bytes
    )
    too_large = too_large_detail(settings.max_upload_bytes)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_upload_bytes + MULTIPART_SLACK,
        refuse=lambda: answer(413, "too_large", too_large),
    )
    app.add_middleware(RequestMetrics, metrics=metrics)  # added last: outermost, counts all
    authorized = token_checker(settings.token)

    @app.get("/healthz", summary="The process is up")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    def readyz():
        """Ready once the model is loaded and one warm-up image has run."""
        if state.ready.is_set():
            return Readiness(ready=True, detail="model loaded and warmed up")
        detail = f"model failed to load: {state.error}" if state.error else "loading the model"
        return JSONResponse(Readiness(ready=False, detail=detail).model_dump(), 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model", response_model=ModelIdentity, responses=ERRORS)
    def model_identity(_auth: Annotated[None, Depends(authorized)]):
        """The model's identity: config, weights SHA-256, classes, thresholds."""
        state.require_ready()
        return state.model.identity

    @app.post("/v1/predict", response_model=Prediction, responses=ERRORS)
    async def predict(
        file: Annotated[UploadFile, File(description="PNG, JPEG (8/16-bit) or DICOM file")],
        _auth: Annotated[None, Depends(authorized)],
        threshold: Annotated[
            float | None,
            Query(ge=0.0, le=1.0, description="operating point (default: the server's)"),
        ] = None,
        overlay: Annotated[
            bool, Query(description="add a base64 PNG of the image with its boxes drawn")
        ] = False,
    ):
        """Detect fractures in one image; boxes in the image's own pixel coordinates."""
        state.require_ready()
        thr = settings.threshold if threshold is None else threshold
        name, method = _client_name(file), settings.score_method
        t0 = time.perf_counter()
        upload = await _read_upload(file, name, settings)
        decode_ms = 1000 * (time.perf_counter() - t0)
        done = await state.infer(upload.gray, name)
        out = done.output  # Instances, or a dict with the image-level head's probability too
        inst, head = (out["instances"], out["head_score"]) if isinstance(out, dict) else (out, None)
        pred = image_prediction(inst, 1, name, upload.gray.shape, thr, method, head)
        png = await run_in_threadpool(_overlay_png, upload.gray, pred, method) if overlay else None
        return Prediction(
            threshold=thr,
            image_score=method,
            image=pred.entry,
            results=pred.results,
            dicom=upload.dicom,
            model=state.model.identity,
            timing={
                "decode_ms": round(decode_ms, 2),
                "queue_ms": round(1000 * done.queue_seconds, 2),
                "inference_ms": round(1000 * done.inference_seconds, 2),
                "batch_size": done.batch_size,
            },
            overlay_png=png,
        )

    return app
