"""Reference photos: one typical training photo per species, carried in the model card so the page
can show what the named species looks like (with its credit where the licence asks for one)."""

from __future__ import annotations

import base64

import numpy as np

from bunga.data.dataset import PhotoSet
from bunga.imaging import ImageRejected, thumbnail_jpeg
from bunga.models.unit_rows import l2_normalise
from bunga.schemas import ReferencePhoto


def typical_indices(x: np.ndarray, y: np.ndarray, classes: list[str]) -> dict[str, int]:
    """For each class, the row whose embedding is closest (cosine) to the class's mean direction."""
    unit = l2_normalise(x)
    out = {}
    for name in classes:
        rows = np.flatnonzero(y == name)
        if len(rows):
            centre = unit[rows].mean(axis=0)
            out[name] = int(rows[np.argmax(unit[rows] @ centre)])
    return out


def reference_photos(
    photos: PhotoSet, x: np.ndarray, y: np.ndarray, classes: list[str], max_pixels: int
) -> dict[str, ReferencePhoto]:
    """A small JPEG of each class's typical photo (``photos``, ``x`` and ``y`` aligned row by row);
    a class whose chosen photo cannot be read goes without one."""
    out = {}
    for name, row in typical_indices(x, y, classes).items():
        try:
            jpeg = thumbnail_jpeg(photos.paths[row], max_pixels)
        except (ImageRejected, OSError):
            continue
        licence, link = photos.credit(row)
        out[name] = ReferencePhoto(jpeg_base64=base64.b64encode(jpeg).decode("ascii"), licence=licence, link=link)
    return out
