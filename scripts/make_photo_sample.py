"""Regenerate the shipped photo sample in collected_data/foto_contoh/ from ../shared/data/tf_flowers.

Run once by the maintainers (`python scripts/make_photo_sample.py`); the photos are committed. Fifty
photos per class are drawn by a seeded shuffle (never picked by hand), resized to at most 400 px on
the long side and re-encoded as JPEG without metadata. The photos are CC BY 2.0 (Flickr, via the
TensorFlow `flower_photos` collection): ATTRIBUTION.md lists every shipped file with its Flickr page.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "tf_flowers"
OUT = ROOT / "collected_data" / "foto_contoh"
PER_CLASS, LONG_SIDE, QUALITY, SEED = 50, 400, 82, 2026
HEADER = """# Shipped photo sample: attribution

Photos from the TensorFlow `flower_photos` collection, originally published on Flickr. Each is
licensed **CC BY 2.0** (https://creativecommons.org/licenses/by/2.0/) by its photographer, named on
its Flickr page below. Changes made: resized to at most {side} px on the long side and re-encoded as
JPEG (quality {quality}, metadata removed). Drawn {per} per class by a seeded shuffle
(`scripts/make_photo_sample.py`).

| file | photo page (photographer named there) | licence | change |
|---|---|---|---|
"""


def main() -> None:
    if not SOURCE.is_dir():
        raise SystemExit(f"{SOURCE} is not here: the sample is made from ../shared/data/tf_flowers")
    shutil.rmtree(OUT, ignore_errors=True)
    rows = []
    for folder in sorted(p for p in SOURCE.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        random.Random(f"{SEED}-{folder.name}").shuffle(photos)
        (OUT / folder.name).mkdir(parents=True)
        for photo in sorted(photos[:PER_CLASS]):
            image = ImageOps.exif_transpose(Image.open(photo)).convert("RGB")
            original = image.size
            image.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
            change = "re-encoded" if image.size == original else f"resized to {image.width}x{image.height}, re-encoded"
            target = OUT / folder.name / photo.name
            image.save(target, "JPEG", quality=QUALITY, optimize=True)
            flickr_id = photo.name.split("_")[0]
            rows.append(
                f"| `{folder.name}/{photo.name}` | https://www.flickr.com/photo.gne?id={flickr_id} | CC BY 2.0 "
                f"| {change} |"
            )
    text = HEADER.format(side=LONG_SIDE, quality=QUALITY, per=PER_CLASS) + "\n".join(rows) + "\n"
    (OUT / "ATTRIBUTION.md").write_text(text, encoding="utf-8")
    print(f"{len(rows)} photos written to {OUT}")


if __name__ == "__main__":
    main()
