"""The garden teaches the model, measured (#29 item 3): a photo model trained on one source; N reviewed
photos per species from another source added through the review path (stored in the inbox as a
visitor's feedback, then a curator's decision record, exactly what /feedback and /review write);
`bunga pipeline --if-needed`; macro-F1 of the champion on the rest of that source, for N = 0, 5, 10, 20.

There is no second collection of tf_flowers' species in ../shared, so the other source is built
from it: the photos of the first source are 80 per species, the other source's are other tf_flowers
photos of the same species seen through a different "camera" (a warm colour cast, a softer lens and
stronger JPEG compression). That is a milder change than a real one (other photographers, places,
cultivars: the issue's yellow wild tulips against pink garden ones), so the gains here are a lower
bound on what reviewed garden photos add, and the figure at N = 0 is optimistic.
Run: python -m benchmarks.garden.review_loop"""

from __future__ import annotations

import io
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from benchmarks.garden.pipeline import run_cli
from benchmarks.harness.common import SHARED_FLOWERS, WORK, save
from bunga.garden import decisions, records
from bunga.imaging import photo_tensor
from bunga.predict import Predictor

FIRST, POOL = 80, 20  # per species: the first source, the other source's photos available to review
STEPS = (0, 5, 10, 20)


def other_camera(path: Path, rng: random.Random) -> bytes:
    """A tf_flowers photo as another camera would give it (colour cast, softness, compression)."""
    with Image.open(path) as image:
        photo = image.convert("RGB")
    r, g, b = photo.split()
    photo = Image.merge("RGB", (r.point(lambda v: min(255, int(v * 1.12))), g, b.point(lambda v: int(v * 0.85))))
    photo = ImageEnhance.Contrast(photo).enhance(0.85).filter(ImageFilter.GaussianBlur(1.2))
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=rng.randint(45, 60))
    return out.getvalue()


def macro_f1(truth: list[str], predicted: list[str]) -> float:
    labels = sorted(set(truth))
    scores = []
    for label in labels:
        tp = sum(t == p == label for t, p in zip(truth, predicted, strict=True))
        fp = sum(p == label != t for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == label != p for t, p in zip(truth, predicted, strict=True))
        scores.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.mean(scores))


def main() -> dict[str, Any]:
    if not SHARED_FLOWERS.is_dir():
        out: dict[str, Any] = {"skipped": "../shared/data/tf_flowers is not present"}
        save("review_loop", out)
        return out
    ws = WORK / "review_loop"
    shutil.rmtree(ws, ignore_errors=True)
    rng = random.Random(7)
    feedback = ws / "collected_data" / "feedback"
    pools: dict[str, list[bytes]] = {}
    held: list[tuple[str, bytes]] = []
    for folder in sorted(p for p in SHARED_FLOWERS.iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        rng.shuffle(photos)
        target = ws / "collected_data" / "staf" / folder.name
        target.mkdir(parents=True)
        for path in photos[:FIRST]:
            shutil.copy(path, target / path.name)
        other = [other_camera(p, rng) for p in photos[FIRST:]]
        pools[folder.name], held = other[:POOL], held + [(folder.name, b) for b in other[POOL:]]
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{ws / 'mlflow.db'}",
        "BUNGA_ARTIFACT_DIR": str(ws / "mlartifacts"),
        "BUNGA_CACHE_DIR": str(ws / "cache"),
    }
    rows, added = [], 0
    for n in STEPS:
        for species, pool in pools.items():  # the review path: a visitor's photo, then a curator's decision
            for data in pool[added:n]:
                sha = records.store_photo(feedback, data, "jpg", species, voter=f"visitor-{rng.random()}")
                name, text = decisions.record(sha, "label", species, "benchmark-curator")
                (feedback / name).parent.mkdir(parents=True, exist_ok=True)
                (feedback / name).write_text(text)
        added = n
        run = run_cli(["pipeline", "--kind", "photos", "--if-needed"], ws, env)
        shutil.rmtree(ws / "bunga-model", ignore_errors=True)
        run_cli(["export", "--kind", "photos", "--out", str(ws / "bunga-model")], ws, env)
        predictor = Predictor(ws / "bunga-model" / "photos")
        truth, guessed = [], []
        for at in range(0, len(held), 32):
            chunk = held[at : at + 32]
            x = np.stack([photo_tensor(data, 50_000_000) for _, data in chunk])
            probs = predictor.score_photos(x).probabilities
            truth += [s for s, _ in chunk]
            guessed += [predictor.classes[i] for i in probs.argmax(axis=1)]
        promoted = "gate PASSED" in run["stdout"]
        rows.append({"reviewed_per_species": n, "macro_f1": macro_f1(truth, guessed), "promoted": promoted})
        print(rows[-1], flush=True)
    out = {
        "protocol": f"first source {FIRST}/species; other source: other tf_flowers photos through another "
        f"'camera'; {POOL} per species available to review, {len(held)} held out for the score",
        "steps": rows,
        "cpu_count": os.cpu_count(),
    }
    save("review_loop", out)
    return out


if __name__ == "__main__":
    main()
