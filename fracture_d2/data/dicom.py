"""Read DICOM radiographs as display-ready 2-D uint8 images, the way a viewer shows them.

The pixel pipeline follows DICOM PS3.3 C.11: stored values -> modality LUT or rescale
slope/intercept (``apply_modality_lut``) -> VOI LUT or window centre/width when the file has one
(``apply_voi_lut``) -> 0..255 -> inverted for MONOCHROME1 (where a high value means dark).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import DataError
from .image_io import to_uint8

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


def has_dicom_magic(path) -> bool:
    """True if the file has the ``DICM`` marker at byte 128 (DICOM Part 10 files)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom(path) -> bool:
    """DICOM by suffix (``.dcm``, ``.dicom``, ``.dic``) or, for other names, by the marker."""
    path = Path(path)
    return path.suffix.lower() in DICOM_SUFFIXES or (path.suffix == "" and has_dicom_magic(path))


def _voi_output_range(ds) -> tuple[float, float] | None:
    """The output range of the VOI transform ``apply_voi_lut`` picks, or None without one.

    A window maps onto the full range of the (rescaled) stored bits, a VOI LUT onto its own
    entries; that range, not the image's min..max, is what a viewer maps to black..white.
    """
    seq = ds.get("VOILUTSequence")
    if seq and None not in (seq[0].get("LUTDescriptor"), seq[0].get("LUTData")):
        from pydicom.pixels import apply_voi

        # Push every input value the LUT maps through pydicom's own LUT decoding.
        entries = int(seq[0].LUTDescriptor[0]) or 2**16
        first = int(seq[0].LUTDescriptor[1])
        out = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds)
        return float(out.min()), float(out.max())
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return None
    # Same rule as pydicom.pixels.processing.apply_windowing (PS3.3 C.11.2.1.2).
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, 2.0 ** int(ds.BitsStored) - 1
    else:
        lo, hi = -(2.0 ** (int(ds.BitsStored) - 1)), 2.0 ** (int(ds.BitsStored) - 1) - 1
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * slope + intercept, hi * slope + intercept
    return min(lo, hi), max(lo, hi)


def dicom_to_uint8(ds, path="<dataset>") -> np.ndarray:
    """Turn a pydicom dataset's pixels into a 2-D uint8 image (see the module docstring).

    Raises:
        DataError: multi-frame data, no pixel data, or pixel data pydicom cannot decode.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise DataError(
            path,
            f"multi-frame DICOM ({frames} frames) is not supported; "
            "export the frame to analyse as a single-frame file",
        )
    if "PixelData" not in ds:
        raise DataError(path, "DICOM file has no pixel data (not an image)")
    try:
        arr = ds.pixel_array
    except Exception as e:  # decoders raise many types; the reason is in the message
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise DataError(
            path,
            f"cannot decode DICOM pixel data (transfer syntax {syntax}): {e} "
            "(compressed files need a decoder plugin such as pylibjpeg or gdcm)",
        ) from e
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if arr.ndim == 3:  # colour (RGB, or YBR which pydicom converts to RGB): show as gray
        return cv2.cvtColor(to_uint8(arr), cv2.COLOR_RGB2GRAY)
    if arr.ndim != 2:
        raise DataError(path, f"unexpected DICOM pixel array shape {arr.shape}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(path, f"photometric interpretation {photometric} is not supported")
    values = apply_modality_lut(arr, ds)
    voi_range = _voi_output_range(ds)
    if voi_range is not None:
        if ds.get("VOILUTSequence") and np.all(np.mod(values, 1) == 0):
            values = values.astype(np.int64)  # a LUT is indexed by integers
        values = apply_voi_lut(values, ds).astype(np.float64)
        lo, hi = voi_range
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
        gray = np.round(np.clip(scaled, 0, 255)).astype(np.uint8)
    else:
        # No window in the file: show the image's own range, as for 16-bit PNGs (to_uint8).
        gray = to_uint8(values)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return gray


def read_dicom(path) -> np.ndarray:
    """Read a single-frame DICOM file as a 2-D uint8 image, ready to display or detect on.

    Raises:
        DataError: the file is missing, not DICOM, multi-frame, or cannot be decoded.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path))
    except InvalidDicomError as e:
        raise DataError(path, "not a DICOM file (no DICOM header or 'DICM' marker)") from e
    except (OSError, ValueError, EOFError) as e:
        raise DataError(path, f"cannot read DICOM: {e}") from e
    return dicom_to_uint8(ds, path)
