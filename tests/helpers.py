"""Small builders shared by tests: photos as bytes."""

from __future__ import annotations

import io
import random

from bunga.data.synthetic import STYLES, draw_flower


def photo_bytes(style: str = "sintetis_merah", seed: int = 0, fmt: str = "JPEG", size: int = 128) -> bytes:
    """A synthetic flower photo encoded as ``fmt``."""
    buffer = io.BytesIO()
    draw_flower(STYLES[style], random.Random(f"t{seed}"), size).save(buffer, fmt)
    return buffer.getvalue()
