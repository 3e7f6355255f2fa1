"""Decoding and preprocessing photos: one code path for merge, training, export and serving.

Only Pillow and numpy: the serving install imports this module.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

INPUT_SIZE = 224
ALLOWED_FORMATS: dict[str, str] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
REFUSED_SUFFIXES = frozenset({".gif", ".tif", ".tiff", ".bmp", ".heic", ".heif", ".pdf", ".svg", ".avif"})

# Our own pixel limit is checked before decoding; Pillow's global one stays as a second fence.
Image.MAX_IMAGE_PIXELS = 200_000_000


class ImageRejected(ValueError):
    """A file that is not an acceptable photo; the message says why in one line."""


@dataclass(frozen=True)
class PhotoInfo:
    """What validation learned about a photo."""

    format: str
    width: int
    height: int

    @property
    def suffix(self) -> str:
        """The canonical file suffix for the format, without a dot."""
        return ALLOWED_FORMATS[self.format]


def _open(source: bytes | Path) -> Image.Image:
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(stream)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected("image has too many pixels (decompression bomb?)") from err
    except Exception as err:  # Pillow raises many kinds for undecodable input
        raise ImageRejected("not a readable image (JPEG, PNG or WebP expected)") from err


def load_photo(
    source: bytes | Path, max_pixels: int, min_side: int = 1, draft_to: int | None = None
) -> tuple[Image.Image, PhotoInfo]:
    """Open, check and fully decode a photo, upright (EXIF orientation applied), in RGB.

    ``draft_to`` lets JPEG decoding shrink by a power of two while staying >= that size,
    which makes a 12-megapixel photo about ten times cheaper to decode.
    """
    if isinstance(source, bytes) and not source:
        raise ImageRejected("empty file")
    image = _open(source)
    fmt = image.format or "?"
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected(f"format {fmt} is not accepted (JPEG, PNG or WebP only)")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(f"image is {width}x{height}, over the limit of {max_pixels:,} pixels")
    if min(width, height) < min_side:
        raise ImageRejected(f"image is {width}x{height}, smaller than {min_side} px on a side")
    try:
        if draft_to is not None and fmt == "JPEG":
            image.draft("RGB", (draft_to, draft_to))
        image.load()
        image = ImageOps.exif_transpose(image) or image
        image = image.convert("RGB")
    except Exception as err:
        raise ImageRejected(f"image data is corrupt or truncated ({type(err).__name__})") from err
    return image, PhotoInfo(fmt, width, height)


def to_tensor(image: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """Resize the short side to ``size``, centre-crop a square, scale to (x - 127) / 128, CHW."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = image.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    crop = resized.crop((left, top, left + size, top + size))
    array = np.asarray(crop, dtype=np.float32)
    return ((array - 127.0) / 128.0).transpose(2, 0, 1).copy()


def photo_tensor(source: bytes | Path, max_pixels: int, min_side: int = 1, size: int = INPUT_SIZE) -> np.ndarray:
    """Decode a photo and preprocess it for a backbone of input ``size`` in one step."""
    image, _ = load_photo(source, max_pixels, min_side, draft_to=size)
    return to_tensor(image, size)


def thumbnail_jpeg(path: bytes | Path, max_pixels: int, side: int = 160, quality: int = 80) -> bytes:
    """A small upright JPEG of a photo (at most ``side`` px on the long side), metadata dropped."""
    image, _ = load_photo(path, max_pixels, draft_to=side)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()
