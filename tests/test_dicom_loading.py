"""Pixel handling of DICOM files (MONOCHROME1, 16-bit, rescale, window, VOI LUT, multi-frame)
and input collection for tools/predict.py (folders, CSV lists, skips)."""

import numpy as np
import pytest
from dicom_utils import write_dicom

from fracture_d2.data.dicom import is_dicom, read_dicom
from fracture_d2.data.errors import DataError
from fracture_d2.data.images import load_image
from fracture_d2.inference.loading import collect_inputs

# 12-bit values 0..4080 stored in 16 bits: one row of a ramp, repeated.
RAMP = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (3, 1))


def test_16bit_without_window_uses_full_range(tmp_path):
    g = read_dicom(write_dicom(tmp_path / "a.dcm", RAMP, bits_stored=12))
    assert g.dtype == np.uint8 and g.shape == RAMP.shape
    assert g.min() == 0 and g.max() == 255
    assert np.all(np.diff(g[0].astype(int)) >= 0)  # monotonic: no wrap-around or truncation
    assert len(np.unique(g)) == 256  # 16-bit scaled, not cut to its low byte


def test_monochrome1_is_inverted(tmp_path):
    mono2 = read_dicom(write_dicom(tmp_path / "m2.dcm", RAMP, bits_stored=12))
    mono1 = read_dicom(write_dicom(tmp_path / "m1.dcm", RAMP, "MONOCHROME1", bits_stored=12))
    np.testing.assert_array_equal(mono1, 255 - mono2)


def test_window_center_width_is_applied(tmp_path):
    g = read_dicom(write_dicom(tmp_path / "w.dcm", RAMP, bits_stored=12, window=(1024, 1024)))
    row = dict(zip(RAMP[0].tolist(), g[0].tolist(), strict=True))
    assert row[0] == 0 and row[496] == 0  # below the window: black
    assert row[1536] == 255 and row[4080] == 255  # above: white
    assert abs(row[1024] - 128) <= 1 and abs(row[768] - 64) <= 1  # linear inside


def test_rescale_slope_intercept_before_window(tmp_path):
    # The same window expressed in rescaled units must give the same picture.
    plain = read_dicom(write_dicom(tmp_path / "p.dcm", RAMP, bits_stored=12, window=(1024, 1024)))
    rescaled = read_dicom(
        write_dicom(
            tmp_path / "r.dcm",
            RAMP,
            bits_stored=12,
            slope=2.0,
            intercept=-1000.0,
            window=(2 * 1024 - 1000, 2 * 1024),
        )
    )
    assert np.abs(plain.astype(int) - rescaled.astype(int)).max() <= 1


def test_rescale_without_window_keeps_contrast_and_order(tmp_path):
    g = read_dicom(write_dicom(tmp_path / "n.dcm", RAMP, bits_stored=12, slope=-1.0, intercept=0))
    assert g[0, 0] == 255 and g[0, -1] == 0  # a negative slope reverses the values


def test_voi_lut_is_applied_and_preferred_over_window(tmp_path):
    lut = np.linspace(1000, 3000, 2048).astype(int).tolist()  # maps stored 1024..3071
    g = read_dicom(
        write_dicom(tmp_path / "l.dcm", RAMP, bits_stored=12, voi_lut=(1024, lut), window=(100, 10))
    )
    row = dict(zip(RAMP[0].tolist(), g[0].tolist(), strict=True))
    assert row[0] == 0 and row[1024] == 0 and row[4080] == 255
    assert abs(row[2048] - 128) <= 1  # the LUT's middle, not the (tiny) window's


def test_signed_and_8bit(tmp_path):
    signed = (RAMP.astype(np.int32) - 2048).astype(np.int16)
    g = read_dicom(write_dicom(tmp_path / "s.dcm", signed, bits_stored=12))
    assert g[0, 0] == 0 and g[0, -1] == 255 and np.all(np.diff(g[0].astype(int)) >= 0)
    eight = (np.arange(256, dtype=np.uint8)[None].repeat(2, 0) // 2).astype(np.uint8)
    np.testing.assert_array_equal(read_dicom(write_dicom(tmp_path / "e.dcm", eight)), eight)


def test_multiframe_and_non_dicom_are_refused_with_the_file_name(tmp_path):
    path = write_dicom(tmp_path / "mf.dcm", np.stack([RAMP, RAMP, RAMP]), bits_stored=12)
    with pytest.raises(DataError, match=r"mf\.dcm: multi-frame DICOM \(3 frames\)"):
        read_dicom(path)
    fake = tmp_path / "fake.dcm"
    fake.write_text("not dicom")
    with pytest.raises(DataError, match=r"fake\.dcm: not a DICOM file"):
        load_image(fake)


def test_collect_inputs_folders_csv_and_skips(tmp_path):
    import cv2

    root = tmp_path / "scans"
    (root / "a" / "b").mkdir(parents=True)
    cv2.imwrite(str(root / "a" / "x.png"), np.full((8, 8), 100, np.uint8))
    cv2.imwrite(str(root / "a" / "b" / "y.jpg"), np.full((8, 8), 50, np.uint8))
    write_dicom(root / "a" / "b" / "IM0001", RAMP)  # DICOM without a suffix: found by marker
    (root / "readme.txt").write_text("hello")
    found = collect_inputs([root])
    assert [p.name for p in found.files] == ["IM0001", "y.jpg", "x.png"]
    assert is_dicom(found.files[0]) and load_image(found.files[0]).shape == RAMP.shape
    assert sum(found.ignored.values()) == 1  # readme.txt is counted, not silently dropped

    csv = tmp_path / "list.csv"
    csv.write_text("path,label\nscans/a/x.png,1\n\nscans/missing.png,0\n")
    listed = collect_inputs([csv, root / "a" / "x.png", tmp_path / "nope.png"])
    assert [p.name for p in listed.files] == ["x.png"]  # listed twice, read once
    assert listed.ignored["listed more than once"] == 1
    reasons = [(s.file, s.reason) for s in listed.skipped]
    assert reasons[0][0].endswith("list.csv:3") and "no path" in reasons[0][1]
    assert reasons[1][0].endswith("list.csv:4") and "file not found" in reasons[1][1]
    assert reasons[2] == (str(tmp_path / "nope.png"), "no such file or folder")
    # A header-less CSV (like MURA's *_image_paths.csv) with paths relative to --root.
    plain = tmp_path / "sub" / "paths.csv"
    plain.parent.mkdir()
    plain.write_text("scans/a/x.png\n")
    assert collect_inputs([plain], root=tmp_path).files == [tmp_path / "scans/a/x.png"]
