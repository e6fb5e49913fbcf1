"""Response bodies of the REST service (pydantic; they make the OpenAPI schema at /docs).

The image and box fields are those of ``predictions.json`` (tools/predict.py), built by the
same function (:func:`fracture_d2.inference.results.image_prediction`).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

FORMAT = "fracture_d2.serve/1"


class ErrorBody(BaseModel):
    """Every error answer: a machine-readable kind and a one-line explanation."""

    error: str = Field(description="kind, e.g. unsupported_type, too_large, queue_full")
    detail: str = Field(description="what is wrong with the request, naming the upload")


class ImageEntry(BaseModel):
    """The image's entry, as in ``predictions.json`` ``images``."""

    id: int
    file_name: str = Field(description="the uploaded file's name")
    width: int
    height: int
    score: float = Field(description="image-level score (the server's --image-score method)")
    positive: bool = Field(description="score >= threshold")
    n_boxes: int = Field(description="boxes scoring >= threshold")
    head_score: float | None = Field(
        None, description="the image-level head's probability (MixedSupervisionRCNN models)"
    )


class BoxResult(BaseModel):
    """A box, as in ``predictions.json`` ``results`` (COCO results format)."""

    image_id: int
    category_id: int = Field(description="class index + 1 (see model.classes)")
    bbox: list[float] = Field(description="x, y, width, height in original pixels")
    score: float


class DicomIds(BaseModel):
    """Identifiers read from an uploaded DICOM file (null when the file lacks one)."""

    study_instance_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None


class Timing(BaseModel):
    """Where the request's time went on the server."""

    decode_ms: float
    queue_ms: float = Field(description="waiting for the model (batching, other requests)")
    inference_ms: float = Field(description="the forward pass of the whole batch")
    batch_size: int = Field(description="images in the forward pass this image was part of")


class Category(BaseModel):
    """A class the model detects (COCO category)."""

    id: int
    name: str


class Thresholds(BaseModel):
    """Operating points."""

    default: float = Field(description="the service's default threshold")
    score_thresh_test: float = Field(
        description="the model drops boxes below this itself: a lower threshold shows no more"
    )
    nms_thresh_test: float = Field(description="IoU of the model's non-maximum suppression")


class ModelIdentity(BaseModel):
    """``GET /v1/model``'s answer, repeated in every prediction."""

    config_name: str
    config_file: str
    weights_file: str
    weights_sha256: str = Field(description="SHA-256 of the checkpoint or exported file")
    backend: str = Field(description="pytorch, torchscript or onnxruntime")
    exported_from: dict | None = Field(description="an exported model's source")
    classes: list[Category]
    thresholds: Thresholds
    image_score: str
    input: dict = Field(description="test-time resize and channel format")
    device: str


class Prediction(BaseModel):
    """``POST /v1/predict``'s answer."""

    format: str = FORMAT
    threshold: float
    image_score: str = Field(description="how the image score is made from box scores")
    image: ImageEntry
    results: list[BoxResult]
    dicom: DicomIds | None = None
    model: ModelIdentity
    timing: Timing
    overlay_png: str | None = Field(
        None, description="base64 PNG of the image with its boxes (with overlay=true)"
    )


class Readiness(BaseModel):
    """``GET /readyz``'s answer."""

    ready: bool
    detail: str
