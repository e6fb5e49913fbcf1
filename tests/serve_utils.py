"""Helpers for the serving tests: uploads of every kind, good and bad, made in memory."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pydicom
from dicom_utils import write_dicom
from pydicom.uid import generate_uid

from fracture_d2.data.synth_radiograph import render_radiograph


def radiograph(w: int = 112, h: int = 96, seed: int = 0) -> np.ndarray:
    """A small synthetic radiograph (uint8, h x w) with a fracture."""
    gray, _ = render_radiograph("WRIST", (w, h), 1, np.random.default_rng(seed))
    return gray


def encode(gray: np.ndarray, ext: str = ".png") -> bytes:
    """PNG/JPEG bytes of an image (uint8 or uint16)."""
    ok, data = cv2.imencode(ext, gray)
    assert ok
    return data.tobytes()


def dicom_bytes(tmp_path, name: str, pixels: np.ndarray, **kwargs) -> bytes:
    """A DICOM file's bytes, with Study and Series Instance UIDs (see
    ``dicom_utils.write_dicom`` for the options)."""
    path = write_dicom(tmp_path / name, pixels, **kwargs)
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def dicom_without_pixels(tmp_path, name: str, sop_class: str) -> bytes:
    """A DICOM Part 10 file whose dataset has no pixel data (e.g. a structured report)."""
    path = write_dicom(tmp_path / name, np.zeros((4, 4), np.uint8))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def wait_ready(client, timeout: float = 30.0) -> dict:
    """Poll ``/readyz`` until it answers 200 (returns its body) or fail after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = client.get("/readyz")
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 503, r.text
        time.sleep(0.02)
    raise AssertionError(f"not ready after {timeout} s: {r.json()}")
