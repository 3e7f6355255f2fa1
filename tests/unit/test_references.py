"""Reference photos: credits read from a collection's ATTRIBUTION.md, the typical photo chosen."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bunga.data.images import read_attribution
from bunga.training.references import typical_indices


def test_attribution_rows_become_credits_keyed_by_source(tmp_path: Path) -> None:
    path = tmp_path / "ATTRIBUTION.md"
    path.write_text(
        "# Credits\n\n| file | page | licence | change |\n|---|---|---|---|\n"
        "| `daisy/1_a.jpg` | https://www.flickr.com/photo.gne?id=1 | CC BY 2.0 | re-encoded |\n"
        "| daisy/2.jpg | https://x.org/2 | CC0 | none |\n"  # no backticks: not a row of the table
        "| `rose/3.jpg` | not a link | CC BY 2.0 | none |\n"
        "some prose with `code` in it\n",
        encoding="utf-8",
    )
    assert read_attribution(path, "foto_contoh") == {
        "foto_contoh/daisy/1_a.jpg": ("CC BY 2.0", "https://www.flickr.com/photo.gne?id=1")
    }
    assert read_attribution(path, ".") == {"daisy/1_a.jpg": ("CC BY 2.0", "https://www.flickr.com/photo.gne?id=1")}


def test_typical_photo_is_the_one_nearest_its_class_direction() -> None:
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.2, (9, 3))
    b = np.array([0.0, 1.0, 0.0]) + rng.normal(0, 0.2, (9, 3))
    a[4], b[2] = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    x, y = np.concatenate([a, b]) * rng.uniform(0.5, 3, (18, 1)), np.array(["a"] * 9 + ["b"] * 9)
    chosen = typical_indices(x, y, ["a", "b", "c"])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for name, row in chosen.items():
        rows = np.flatnonzero(y == name)
        centre = unit[rows].mean(axis=0)
        assert row in rows and unit[row] @ centre == max(unit[rows] @ centre)
    assert set(chosen) == {"a", "b"}  # a class without photos gets none
    assert chosen == {"a": 4, "b": 11}
