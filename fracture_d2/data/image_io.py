"""Read radiographs as single-channel uint8 images (8/16-bit, 1/3 channels, PNG/JPEG)."""

from __future__ import annotations

import cv2
import numpy as np

from .errors import DataError


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale an integer or float image to uint8 by its own range (16-bit is scaled, not cut).

    8-bit images are returned unchanged. Wider images are mapped linearly from their
    min..max to 0..255, so a 12-bit radiograph stored in 16 bits keeps its full contrast.
    """
    if image.dtype == np.uint8:
        return image
    img = image.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.zeros(image.shape, np.uint8)
    return np.round((img - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def read_radiograph(path) -> np.ndarray:
    """Read an image file as a 2-D uint8 array (colour is converted to gray, EXIF applied).

    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise DataError(path, "cannot read image (missing, unreadable or not an image)")
    return to_uint8(img)


def to_model_format(gray: np.ndarray, image_format: str) -> np.ndarray:
    """Turn a 2-D uint8 radiograph into the HxWxC layout ``cfg.INPUT.FORMAT`` asks for."""
    if image_format == "L":
        return gray[:, :, None]
    if image_format in ("BGR", "RGB"):
        return np.repeat(gray[:, :, None], 3, axis=2)
    raise ValueError(
        f"INPUT.FORMAT {image_format!r} is not supported for radiographs " "(use BGR, RGB or L)"
    )
