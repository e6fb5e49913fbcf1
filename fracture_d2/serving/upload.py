"""Turn an uploaded file into a 2-D uint8 radiograph, or a 4xx error naming the problem.

The type comes from the bytes, not the name or the Content-Type a client sends. Limits are
checked on the header before any pixel is decoded (a 100 kB PNG may claim 60000 x 60000
pixels). The pixels are read by the project's own loaders (:func:`fracture_d2.inference.
load_image`: 8/16-bit PNG/JPEG, DICOM with rescale, VOI LUT, MONOCHROME1), from a file in a
private temporary folder that is deleted before this returns, whatever happens.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fracture_d2.data.errors import DataError
from fracture_d2.data.image_size import ImageTooLarge, read_image_header
from fracture_d2.inference import load_image

from .errors import ServiceError

SUFFIX = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm"}
ACCEPTED = "PNG, JPEG or DICOM (Part 10, with the 'DICM' marker)"


@dataclass
class DecodedUpload:
    """An upload ready for the model."""

    gray: np.ndarray  # 2-D uint8
    kind: str  # png, jpeg or dicom
    dicom: dict | None = None  # Study/Series/SOP Instance UIDs of a DICOM file


def sniff(data: bytes) -> str | None:
    """The file type from its first bytes: ``png``, ``jpeg``, ``dicom`` or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    return None


def _too_many(name: str, w: int, h: int, max_pixels: int) -> ServiceError:
    return ServiceError(
        413,
        "too_many_pixels",
        f"{name}: {w} x {h} = {w * h} pixels is over the limit of {max_pixels} "
        "(downsample the image, or start the server with a larger --max-pixels)",
    )


def _check_image(path: Path, name: str, max_pixels: int) -> None:
    try:
        header = read_image_header(path)
    except ImageTooLarge as e:
        raise ServiceError(413, "too_many_pixels", f"{name}: {e.reason}") from None
    except DataError as e:
        raise ServiceError(422, "unreadable_image", f"{name}: {e.reason}") from None
    if header.width * header.height > max_pixels:
        raise _too_many(name, header.width, header.height, max_pixels)
    if not header.ends_well:
        raise ServiceError(
            422,
            "truncated_image",
            f"{name}: the {header.format} file ends before its image does "
            "(truncated upload? send the whole file)",
        )


def _check_dicom(path: Path, name: str, max_pixels: int) -> dict:
    """Header checks of a DICOM file; returns its UIDs."""
    import pydicom

    try:
        # Large values (the pixels) are not read here, only their presence and size.
        ds = pydicom.dcmread(str(path), defer_size=4096)
    except Exception as e:  # pydicom raises many types on a broken file
        raise ServiceError(422, "unreadable_image", f"{name}: cannot read DICOM: {e}") from None
    sop_class = ds.get("SOPClassUID")
    sop_name = getattr(sop_class, "name", str(sop_class or "unknown SOP class"))
    if "PixelData" not in ds:
        image_class = "Image" in sop_name
        raise ServiceError(
            422,
            "dicom_no_pixels" if image_class else "dicom_not_image",
            f"{name}: DICOM file has no pixel data"
            + ("" if image_class else f" ({sop_name} is not an image)")
            + "; send a single-frame radiograph",
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ServiceError(
            422,
            "dicom_multiframe",
            f"{name}: multi-frame DICOM ({frames} frames) is not supported; "
            "send the frame to analyse as a single-frame file",
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows * cols > max_pixels:
        raise _too_many(name, cols, rows, max_pixels)
    return {
        "study_instance_uid": _uid(ds, "StudyInstanceUID"),
        "series_instance_uid": _uid(ds, "SeriesInstanceUID"),
        "sop_instance_uid": _uid(ds, "SOPInstanceUID"),
    }


def _uid(ds, keyword: str) -> str | None:
    value = ds.get(keyword)
    return str(value) if value else None


def decode_upload(data: bytes, name: str, max_pixels: int) -> DecodedUpload:
    """Check and decode an uploaded file (blocking: run it off the event loop).

    Args:
        data: the file's bytes.
        name: the client's file name, used in error messages only.
        max_pixels: largest accepted width x height.

    Raises:
        ServiceError: 400 empty, 415 not PNG/JPEG/DICOM, 413 too many pixels, 422 truncated,
            undecodable, multi-frame or pixel-less DICOM.
    """
    if not data:
        raise ServiceError(400, "empty_upload", f"{name}: the upload is empty (0 bytes)")
    kind = sniff(data)
    if kind is None:
        raise ServiceError(
            415, "unsupported_type", f"{name}: not a {ACCEPTED} file (first bytes {data[:8]!r})"
        )
    with tempfile.TemporaryDirectory(prefix="fracture_d2_upload_") as tmp:
        path = Path(tmp) / f"upload{SUFFIX[kind]}"
        path.write_bytes(data)
        uids = None
        if kind == "dicom":
            uids = _check_dicom(path, name, max_pixels)
        else:
            _check_image(path, name, max_pixels)
        try:
            gray = load_image(path)
        except DataError as e:
            raise ServiceError(422, "unreadable_image", f"{name}: {e.reason}") from None
        except Exception as e:  # a decoder's own error on a malformed file: still the file's
            detail = f"{name}: cannot decode the {kind} file ({type(e).__name__}: {e})"
            raise ServiceError(422, "unreadable_image", detail) from None
    return DecodedUpload(gray, kind, uids)
