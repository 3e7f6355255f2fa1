"""The shipped photo sample: real, small, attributed photo by photo, and known to the catalogue."""

from __future__ import annotations

import re

from PIL import Image

from bunga.catalog import load_catalog
from tests.conftest import SHIPPED_PHOTOS

ROW = re.compile(r"^\| `([^`]+)` \| (https://www\.flickr\.com/photo\.gne\?id=(\d+)) \| CC BY 2\.0 \| (.+) \|$")


def _photos() -> list[str]:
    return sorted(p.relative_to(SHIPPED_PHOTOS).as_posix() for p in SHIPPED_PHOTOS.rglob("*.jpg"))


def test_attribution_lists_exactly_the_shipped_photos() -> None:
    text = (SHIPPED_PHOTOS / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "CC BY 2.0" in text and "creativecommons.org/licenses/by/2.0" in text
    rows = [ROW.match(line) for line in text.splitlines() if line.startswith("| `")]
    assert all(rows), [line for line in text.splitlines() if line.startswith("| `") and not ROW.match(line)]
    listed = [m[1] for m in rows if m]
    assert sorted(listed) == _photos() and len(set(listed)) == len(listed)
    for m in rows:
        assert m is not None
        assert m[1].split("/")[-1].split("_")[0] == m[3]  # the Flickr id is the file name's first number
        assert "re-encoded" in m[4]


def test_sample_is_small_and_covers_the_catalogue_species() -> None:
    photos = _photos()
    catalogue = load_catalog(None)
    classes = {p.split("/")[0] for p in photos}
    assert classes == {"daisy", "dandelion", "rose", "sunflower", "tulip"}
    assert classes <= set(catalogue.entries)
    assert all(sum(p.startswith(f"{c}/") for p in photos) >= 40 for c in classes)
    total = sum((SHIPPED_PHOTOS / p).stat().st_size for p in photos)
    assert total <= 8 * 2**20, total
    for p in photos:
        with Image.open(SHIPPED_PHOTOS / p) as image:
            assert image.format == "JPEG" and max(image.size) <= 400 and not image.getexif()
