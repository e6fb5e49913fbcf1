"""The one validator behind every importer; also runs alone (``datasets/validate_coco.py``).

Default: the first problem stops the run with one line naming the file, the row or id, and what
is wrong. With ``skip_invalid`` the item is skipped instead and counted under its reason:

=========================== ===============================================================
image_path_escapes_root     ``file_name`` is absolute, has a drive letter or a ``..`` part
image_missing               no file at ``image_root/file_name``
image_unreadable            the header is not an image (or says 0 px)
image_too_large             more than ``max_pixels`` (a decompression bomb): refused from the
                            header, never decoded
image_corrupt               does not end with PNG IEND / JPEG EOI and OpenCV cannot decode it
image_size_mismatch         the declared width/height differ from the file's
image_duplicate_id          several images share an id (all of them are skipped)
image_duplicate_file_name   a second entry for the same file
image_malformed             an entry without an id or file_name
image_has_invalid_box       one of its boxes was rejected: a partly annotated image would
                            teach the model that the dropped fracture is background
box_malformed               not 4 numbers, wrong column count, unreadable annotation file
box_non_finite              NaN or infinite coordinate
box_empty                   zero or negative width or height
box_outside_image           beyond the image by more than ``tolerance`` px
box_duplicate_id            a second annotation with the same id
box_unknown_image           refers to an image that is not listed
box_unknown_category        refers to a category that is not listed
box_of_skipped_image        a valid box whose image was skipped (counted, not an error)
=========================== ===============================================================

Accepted with a warning (counted, first files listed): ``image_truncated_decodable`` (the file
ends early but OpenCV decodes it, as the training mapper will) and ``box_clipped`` (overshoots by
at most ``tolerance`` px and is clipped). 16-bit PNGs and 1-/3-channel images are accepted.
Only files whose trailer looks wrong are decoded, so validating 40k images takes seconds.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

from .errors import DataError
from .image_size import ImageTooLarge, read_image_header

MAX_PIXELS = 8192 * 8192  # the largest digital radiography detectors are ~4300 px square
LISTED = 20  # file names listed per warning reason in a summary
_DRIVE = re.compile(r"^[A-Za-z]:")


@contextmanager
def _quiet_stderr():
    """Silence C libraries (libjpeg's "Premature end of JPEG file") for one decode."""
    try:
        sys.stderr.flush()
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def decode_state(path) -> str:
    """How a file whose trailer looks wrong decodes.

    ``"corrupt"``: OpenCV (which the training mapper uses) cannot decode it. ``"truncated"``:
    OpenCV can but Pillow, which is strict, cannot: the file ends early. ``"complete"``: both
    can (e.g. harmless bytes after the JPEG EOI marker).
    """
    import cv2
    from PIL import Image

    with _quiet_stderr():
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or not img.size:
        return "corrupt"
    try:
        with Image.open(path) as im:
            im.load()
    except Exception:  # any failure of the strict decoder means "ends early"
        return "truncated"
    return "complete"


class Validator:
    """Checks images and boxes, raising or counting by reason (see the module docstring).

    Args:
        image_root: folder that ``file_name`` values are relative to.
        skip_invalid: skip and count bad items instead of stopping at the first.
        tolerance: how far (px) a box may overshoot the image and still be clipped.
        max_pixels: images with more pixels are refused as decompression bombs.
    """

    def __init__(
        self,
        image_root=".",
        *,
        skip_invalid: bool = False,
        tolerance: float = 2.0,
        max_pixels: int = MAX_PIXELS,
    ):
        self.root = Path(image_root)
        self.skip_invalid, self.tolerance, self.max_pixels = skip_invalid, tolerance, max_pixels
        self.skipped, self.warnings = Counter(), Counter()
        self.warning_files: dict[str, list] = defaultdict(list)
        self.first_error: dict[str, str] = {}
        self.tainted: set = set()  # images whose box was rejected while parsing

    def reject(self, reason: str, where, message: str, row=None) -> None:
        """Raise :class:`DataError`, or (``skip_invalid``) count ``reason`` and return."""
        err = DataError(where, message, row)
        if not self.skip_invalid:
            raise DataError(where, f"{message} [{reason}; --skip-invalid skips and counts]", row)
        self.skipped[reason] += 1
        self.first_error.setdefault(reason, str(err))

    def count(self, reason: str, n: int = 1) -> None:
        """Count a skip that follows from an earlier rejection (never raises)."""
        if n:
            self.skipped[reason] += n

    def taint(self, name) -> None:
        """Mark an image as having lost a box (it is then left out of detection sets)."""
        if name:
            self.tainted.add(name)

    def warn(self, reason: str, name: str) -> None:
        """Count an accepted oddity, listing the first few files."""
        self.warnings[reason] += 1
        if len(self.warning_files[reason]) < LISTED and name not in self.warning_files[reason]:
            self.warning_files[reason].append(name)

    def safe_name(self, file_name, where, row=None) -> bool:
        """True if ``file_name`` is a relative path that stays inside the image root."""
        ok = isinstance(file_name, str) and file_name.strip() and "\0" not in file_name
        p = file_name.replace("\\", "/") if ok else ""
        if ok and not (p.startswith("/") or _DRIVE.match(p) or ".." in p.split("/")):
            return True
        self.reject(
            "image_path_escapes_root",
            where,
            f"file_name {file_name!r} must be a relative path inside the image root",
            row,
        )
        return False

    def image(self, file_name, where, row=None, declared=None, path=None):
        """Check one image; return its ``(width, height)`` or None if skipped.

        Args:
            file_name: the name as the annotation gives it (checked for escaping the root).
            where, row: the annotation file and row/id that list the image, for messages.
            declared: ``(width, height)`` the annotation states, if any.
            path: where the file lies, if not ``image_root / file_name``.
        """
        if not self.safe_name(file_name, where, row):
            return None
        path = Path(path) if path is not None else self.root / file_name
        try:
            h = read_image_header(path)
        except FileNotFoundError:
            return self.reject("image_missing", where, f"image file not found: {path}", row)
        except ImageTooLarge as e:
            return self.reject("image_too_large", where, f"{path}: {e.reason}", row)
        except DataError as e:
            return self.reject("image_unreadable", where, f"{path}: {e.reason}", row)
        if h.width < 1 or h.height < 1:
            return self.reject("image_unreadable", where, f"{path}: header says 0 px", row)
        if h.width * h.height > self.max_pixels:
            msg = f"{path}: {h.width}x{h.height} px is far larger than any radiograph"
            return self.reject("image_too_large", where, msg + " (decompression bomb?)", row)
        if not h.ends_well:
            state = decode_state(path)
            if state == "corrupt":
                msg = f"{path}: truncated or corrupt {h.format} that cannot be decoded"
                return self.reject("image_corrupt", where, msg, row)
            if state == "truncated":
                self.warn("image_truncated_decodable", file_name)
        if declared is not None and tuple(declared) != (h.width, h.height):
            msg = (
                f"declared size {declared[0]}x{declared[1]} differs from {path} "
                f"({h.width}x{h.height}); boxes drawn on another size would be misplaced"
            )
            return self.reject("image_size_mismatch", where, msg, row)
        return h.width, h.height

    def box(self, xyxy, size, where, row=None, image: str = ""):
        """Check one ``(x0, y0, x1, y1)`` pixel box on an image of ``size`` (w, h).

        Returns:
            The box (clipped if it overshot by at most ``tolerance``), or None if rejected.
        """
        what = f"box {[round(v, 2) if isinstance(v, float) else v for v in xyxy]} on {image}"
        if not all(math.isfinite(v) for v in xyxy):
            return self.reject("box_non_finite", where, f"{what}: non-finite coordinate", row)
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        if x1 <= x0 or y1 <= y0:
            return self.reject("box_empty", where, f"{what}: zero or negative size", row)
        w, h, t = size[0], size[1], self.tolerance
        # within the tolerance band on every side, and overlapping the image at all
        inside = -t <= x0 < w and -t <= y0 < h and 0 < x1 <= w + t and 0 < y1 <= h + t
        if not inside:
            msg = f"{what}: outside the {w}x{h} image by more than {t:g} px"
            return self.reject("box_outside_image", where, msg, row)
        clipped = (max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1))
        if clipped != (x0, y0, x1, y1):
            self.warn("box_clipped", image)
        return clipped

    def report(self) -> dict:
        """Counts for a summary: skipped and warnings by reason, listed files, first errors."""
        return {
            "skipped": dict(sorted(self.skipped.items())),
            "warnings": dict(sorted(self.warnings.items())),
            "warning_files": {k: v for k, v in sorted(self.warning_files.items())},
            "first_error": dict(sorted(self.first_error.items())),
        }
