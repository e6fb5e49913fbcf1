"""Read image sizes and file facts from headers, without decoding pixels.

A PNG's size, bit depth and channels are in its first 26 bytes; a JPEG's come from Pillow's lazy
``open`` (markers up to the first scan). The size is the *displayed* size: a JPEG whose EXIF
orientation rotates it by 90 degrees reports width and height swapped, as ``cv2.imread`` and
Detectron2's ``read_image`` decode it. The last bytes tell whether the file ends where its
format says it should (PNG ``IEND``, JPEG ``EOI``), a cheap test for truncation.
"""

from __future__ import annotations

import os
import struct
import warnings
from dataclasses import dataclass

from PIL import Image

from .errors import DataError

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type; palette (3) decodes to gray/RGB
_JPEG_EOI = b"\xff\xd9"
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that transpose the image
# Pillow mode -> (bits per sample, channels)
_MODES = {"1": (1, 1), "L": (8, 1), "P": (8, 1), "LA": (8, 2), "RGB": (8, 3), "RGBA": (8, 4)}
_MODES.update({"CMYK": (8, 4), "YCbCr": (8, 3), "I;16": (16, 1), "I;16B": (16, 1)})
_MODES.update({"I": (32, 1), "F": (32, 1)})


class ImageTooLarge(DataError):
    """Pillow refused the header itself as a decompression bomb (> ~179 Mpx)."""


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says about it."""

    width: int  # as displayed (EXIF orientation applied)
    height: int
    format: str  # "PNG", "JPEG", ... (Pillow's name)
    bit_depth: int  # bits per sample; 0 when the header does not say
    channels: int  # 0 when the header does not say
    ends_well: bool  # PNG ends with IEND / JPEG with EOI (trailing zero padding allowed)


def _png(f, head: bytes) -> ImageHeader:
    w, h, depth, colour = struct.unpack(">IIBB", head[16:26])
    f.seek(-12, os.SEEK_END)
    return ImageHeader(w, h, "PNG", depth, _PNG_CHANNELS.get(colour, 0), f.read(12) == _PNG_END)


def _jpeg_ends_well(f) -> bool:
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - 1024))
    # Some writers pad the file with zero bytes after EOI; that is harmless.
    return f.read().rstrip(b"\x00").endswith(_JPEG_EOI)


def _pillow(f) -> ImageHeader:
    with warnings.catch_warnings():
        # Pillow warns about large images at open; the validator applies its own limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(f) as im:
            w, h = im.size
            fmt = im.format or "?"
            if fmt in ("JPEG", "MPO") and im.getexif().get(0x0112) in _ROTATED:
                w, h = h, w
            depth, channels = _MODES.get(im.mode, (0, len(im.getbands())))
    ends_well = _jpeg_ends_well(f) if fmt in ("JPEG", "MPO") else True
    return ImageHeader(int(w), int(h), fmt, depth, channels, ends_well)


def read_image_header(path) -> ImageHeader:
    """Read a PNG/JPEG/other image's header; see :class:`ImageHeader`.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageTooLarge: Pillow itself refuses the header as a decompression bomb.
        DataError: the file cannot be opened or its header is not an image.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if head[:8] == _PNG_SIG and head[12:16] == b"IHDR" and len(head) == 26:
                return _png(f, head)
            f.seek(0)
            return _pillow(f)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(path, f"far larger than any radiograph ({e})") from None
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise DataError(path, f"not a readable image ({e})") from None
