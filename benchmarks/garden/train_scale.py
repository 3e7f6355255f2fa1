"""Photo training at 10x scale: `bunga merge` + `bunga train --kind photos` from a cold embedding cache
on 1,000 photos and on 10,000 (the ../shared/data/tf_flowers photos, each cut ten times with a
different random crop, mirror and size; at most 400 px on the long side like the shipped sample):
wall time, peak RSS of each command and the embedding cache's size on disk.
Run: python -m benchmarks.garden.train_scale"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from benchmarks.garden.pipeline import run_cli, stages
from benchmarks.harness.common import SHARED_FLOWERS, WORK, save

CROPS = 10


def variant(image: Image.Image, rng: random.Random) -> Image.Image:
    """A random crop (60-100 % of each side), sometimes mirrored, at most 400 px on the long side."""
    w, h = image.size
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = image.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out.thumbnail((rng.randint(300, 400),) * 2)
    return out


def make_sets(root: Path) -> dict[int, Path]:
    """Two project folders: crop 0 of every photo (1x) and all ten crops (10x)."""
    shutil.rmtree(root, ignore_errors=True)
    small, large = root / "x1", root / "x10"
    rng = random.Random(0)
    for path in sorted(SHARED_FLOWERS.glob("*/*.jpg")):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        for k in range(CROPS):
            cut = variant(image, rng)
            for folder in (large, small) if k == 0 else (large,):
                target = folder / "collected_data" / "scale" / path.parent.name / f"{path.stem}-{k}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                cut.save(target, "JPEG", quality=90)
    return {sum(1 for _ in f.glob("collected_data/scale/*/*.jpg")): f for f in (small, large)}


def cache_mb(folder: Path) -> float:
    """Bytes on disk of the embedding cache (files' sizes rounded up to 4 KiB blocks), in MB."""
    files = [p.stat().st_size for p in (folder / ".bunga-cache" / "embeddings").rglob("*.bin")]
    return sum(-(-size // 4096) * 4096 for size in files) / 2**20


def train(folder: Path) -> dict[str, Any]:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    merged = run_cli(["merge"], folder, env)
    trained = run_cli(["train", "--kind", "photos"], folder, env)
    return {
        "merge_s": merged["seconds"],
        "merge_peak_rss_mb": merged["peak_rss_mb"],
        "train_s": trained["seconds"],
        "train_peak_rss_mb": trained["peak_rss_mb"],
        "stages": stages(trained["stdout"]),
        "cache_mb": cache_mb(folder),
    }


def main() -> dict[str, Any]:
    if not SHARED_FLOWERS.is_dir():
        print(f"skipped training at scale: {SHARED_FLOWERS} is absent")
        save("train_scale", {"skipped": True})
        return {"skipped": True}
    runs = {}
    for photos, folder in sorted(make_sets(WORK / "train-scale").items()):
        runs[str(photos)] = {"photos": photos, **train(folder)}
        r = runs[str(photos)]
        print(
            f"{photos:,} photos: merge {r['merge_s']:.1f} s, train {r['train_s']:.1f} s "
            f"(embeddings {r['stages']['embeddings_s']:.1f} s), peak RSS train {r['train_peak_rss_mb']:.0f} MB, "
            f"merge {r['merge_peak_rss_mb']:.0f} MB; cache {r['cache_mb']:.1f} MB"
        )
    small, large = (runs[k] for k in sorted(runs, key=int))
    out = {
        "runs": runs,
        "ratios": {
            "photos": large["photos"] / small["photos"],
            "train_s": large["train_s"] / small["train_s"],
            "train_peak_rss": large["train_peak_rss_mb"] / small["train_peak_rss_mb"],
            "cache_mb": large["cache_mb"] / small["cache_mb"],
        },
    }
    print("ratios", out["ratios"])
    save("train_scale", out)
    return out


if __name__ == "__main__":
    main()
