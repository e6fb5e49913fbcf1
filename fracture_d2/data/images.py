"""Reading any radiograph file the project accepts: PNG/JPEG/BMP/TIFF (8/16-bit, 1/3 channels)
through OpenCV, DICOM through pydicom."""

from __future__ import annotations

import numpy as np

from .dicom import is_dicom, read_dicom
from .image_io import read_radiograph


def load_image(path) -> np.ndarray:
    """Read a radiograph file (PNG/JPEG/BMP/TIFF, or DICOM by its marker or suffix) as a 2-D
    uint8 image.

    Raises:
        DataError: the file cannot be read; the message names the file and the reason.
    """
    if is_dicom(path):
        return read_dicom(path)
    return read_radiograph(path)
