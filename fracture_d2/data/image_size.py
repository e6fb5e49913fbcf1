"""Read image sizes from file headers without decoding pixels."""

from __future__ import annotations

import struct

from PIL import Image

from .errors import DataError

_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def read_image_size(path) -> tuple[int, int]:
    """Return ``(width, height)`` of a PNG/JPEG/other image by reading its header only.

    PNGs are parsed directly (24 bytes); other formats go through Pillow's lazy ``open``.

    Raises:
        DataError: the file is missing or its header is not an image.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            if head[:8] == _PNG_SIG and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return int(w), int(h)
            f.seek(0)
            with Image.open(f) as im:
                return im.size
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(path, f"not a readable image ({e})") from None
