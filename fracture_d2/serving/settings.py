"""The service's settings: batching, limits, operating point and access; one place, typed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# An upload's multipart wrapping (boundaries, part headers) on top of the file itself.
MULTIPART_SLACK = 64 * 1024


@dataclass(frozen=True)
class ServeSettings:
    """How the service batches, what it accepts and who may call it.

    Attributes:
        max_batch: images per forward pass at most (1 turns batching off).
        max_wait_ms: how long the first image of a batch waits for company.
        queue_size: images waiting for the model at most; more answer 503 + Retry-After.
        max_upload_bytes: largest accepted file (413 above it).
        max_pixels: largest accepted width x height, read from the header before decoding
            (413 above it: a small compressed file can decode to gigabytes).
        threshold: default operating point for boxes and the image's ``positive`` flag.
        score_method: the image score method (:func:`fracture_d2.evaluation.image_score`).
        token: bearer token ``/v1/*`` asks for; None leaves the service open.
    """

    max_batch: int = 8
    max_wait_ms: float = 10.0
    queue_size: int = 64
    max_upload_bytes: int = 64 * 2**20
    max_pixels: int = 50_000_000
    threshold: float = 0.5
    score_method: str = "max"
    token: str | None = None

    def __post_init__(self):
        if self.max_batch < 1 or self.queue_size < 1:
            raise ValueError("max_batch and queue_size must be at least 1")
        if self.max_wait_ms < 0 or self.max_upload_bytes < 1 or self.max_pixels < 1:
            raise ValueError("max_wait_ms must be >= 0, max_upload_bytes and max_pixels >= 1")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within 0..1, got {self.threshold}")


@dataclass
class LoadedModel:
    """What the service needs from a model; built by the caller (tools/serve.py, tests).

    Attributes:
        predict: 2-D uint8 images -> per image Detectron2 ``Instances`` (CPU, original pixel
            coordinates), or a dict of those (``instances``) and the image-level head's
            probability (``head_score``, None without a head); called from one worker thread
            only.
        identity: the JSON-able description ``GET /v1/model`` returns
            (:func:`fracture_d2.serving.identity.model_identity`).
        warmup_shape: (height, width) of the blank image run once before ``/readyz`` is ready.
    """

    predict: Callable[[list[np.ndarray]], list]
    identity: dict
    warmup_shape: tuple[int, int] = (512, 512)
