"""Write small synthetic DICOM files with pydicom (for the loading and predict tests)."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def write_dicom(
    path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    window: tuple[float, float] | None = None,
    voi_lut: tuple[int, list[int]] | None = None,
):
    """Write ``pixels`` (2-D uint8/uint16/int16, or 3-D for multi-frame) as a DICOM file.

    Args:
        window: (centre, width) in output units of the modality transform.
        voi_lut: (first value mapped, LUT entries) for a VOI LUT Sequence (16-bit entries).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "synthetic"
    frames = pixels.shape[0] if pixels.ndim == 3 else 1
    ds.Rows, ds.Columns = pixels.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if np.issubdtype(pixels.dtype, np.signedinteger) else 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0.0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        first, entries = voi_lut
        item = pydicom.Dataset()
        item.add_new(0x00283002, "US", [len(entries), first, 16])  # LUT Descriptor
        item.add_new(0x00283006, "US", [int(v) for v in entries])  # LUT Data
        ds.VOILUTSequence = [item]
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path
