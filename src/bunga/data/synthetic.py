"""Drawn flowers for tests and the demo of the photo path (the project ships no real photos)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


@dataclass(frozen=True)
class FlowerStyle:
    """How one synthetic class looks: petal colour and count, petal shape, centre colour."""

    petals: int
    colour: tuple[int, int, int]
    centre: tuple[int, int, int]
    petal_ratio: float


STYLES: dict[str, FlowerStyle] = {
    "sintetis_merah": FlowerStyle(5, (210, 30, 40), (250, 220, 60), 0.45),
    "sintetis_kuning": FlowerStyle(12, (245, 200, 20), (120, 70, 20), 0.25),
    "sintetis_ungu": FlowerStyle(8, (120, 50, 170), (255, 255, 240), 0.35),
    "sintetis_putih": FlowerStyle(16, (245, 245, 250), (240, 180, 20), 0.2),
}


def draw_flower(style: FlowerStyle, rng: random.Random, size: int = 128) -> Image.Image:
    """One noisy drawing of a flower in the given style on a leafy background."""
    green = (rng.randint(20, 70), rng.randint(90, 150), rng.randint(20, 70))
    image = Image.new("RGB", (size, size), green)
    draw = ImageDraw.Draw(image)
    for _ in range(12):  # leaves and shadows in the background
        x, y, r = rng.randint(0, size), rng.randint(0, size), rng.randint(size // 10, size // 4)
        shade = tuple(max(0, min(255, c + rng.randint(-40, 40))) for c in green)
        draw.ellipse((x - r, y - r // 2, x + r, y + r // 2), fill=shade)
    cx = size / 2 + rng.uniform(-size / 10, size / 10)
    cy = size / 2 + rng.uniform(-size / 10, size / 10)
    radius = size * rng.uniform(0.28, 0.4)
    turn = rng.uniform(0, 2 * math.pi)
    colour = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in style.colour)
    width = radius * style.petal_ratio
    for k in range(style.petals):
        angle = turn + 2 * math.pi * k / style.petals
        px, py = cx + math.cos(angle) * radius * 0.55, cy + math.sin(angle) * radius * 0.55
        petal = [
            (
                px + math.cos(angle) * radius * 0.5 * math.cos(t) - math.sin(angle) * width * math.sin(t),
                py + math.sin(angle) * radius * 0.5 * math.cos(t) + math.cos(angle) * width * math.sin(t),
            )
            for t in (i * math.pi / 10 for i in range(20))
        ]
        draw.polygon(petal, fill=colour)
    core = radius * 0.22
    draw.ellipse((cx - core, cy - core, cx + core, cy + core), fill=style.centre)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    noisy = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(6, 18), (size, size, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noisy, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def generate(
    out_dir: Path, per_class: int = 24, seed: int = 0, classes: list[str] | None = None, size: int = 128
) -> list[Path]:
    """Write ``per_class`` JPEGs for each class into ``out_dir/<class>/``; deterministic per seed."""
    written: list[Path] = []
    for name in classes or list(STYLES):
        style = STYLES[name]
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = random.Random(f"{seed}:{name}:{i}")
            path = folder / f"{name}_{i:03d}.jpg"
            draw_flower(style, rng, size).save(path, "JPEG", quality=90)
            written.append(path)
    return written
