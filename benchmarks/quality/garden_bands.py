"""Answer bands and untaught species on a protocol that resembles a garden (#27 item 1): the 79
species of ../shared/data/oxford102_dev (development only, never shipped), 60 known and 19 held out,
5 random splits, known species' photos 70/30 into training and test.

Per split and backbone option, exactly what `bunga train` fits on the training photos (bunga's head:
strength and temperature by 3-fold CV on unit-length embeddings; the abstention threshold refusing
5 % of known training photos out of fold; the sure threshold fitted by bunga.models.bands), then on
the test mix (known test photos and every photo of the held-out species, weighted 45:37 as in the
issue):
- held-out species refused at 95 % of known test photos kept, and AUROC of 1 - max probability;
- the bands at the fitted sure threshold: share of sure answers right, share of known photos sure;
- without bands (every photo the max-probability abstention keeps named as if sure): share right;
- the best the features allow: the largest share of known photos sure at which sure answers are
  97 % right on the test mix itself (an oracle threshold, to tell the fit's error from the features').
Options: Lite0 (shipped) and, where the bench extra brings their weights, Lite1, Lite2 and both side by side.
Run: python -m benchmarks.quality.garden_bands"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness.common import SHARED_FLOWERS, save
from benchmarks.quality.backbones import IMAGENET, features, joined
from bunga.errors import BungaError
from bunga.models import image
from bunga.models.backbone import weights_path
from bunga.models.bands import UNKNOWN_PER_KNOWN, fit_sure
from bunga.models.metrics import auroc

OXFORD = SHARED_FLOWERS.parent / "oxford102_dev"
OPTIONS = {
    "lite0 (shipped)": ("efficientnet-lite0",),
    "lite1": ("efficientnet-lite1",),
    "lite2": ("efficientnet-lite2",),
    "lite1+lite2": ("efficientnet-lite1", "efficientnet-lite2"),
}
SPLITS, HELD_OUT, TEST_SHARE, PRECISION = 5, 19, 0.3, 0.97


def photos() -> tuple[list[Path], np.ndarray]:
    paths = sorted(OXFORD.glob("*/*.jpg"))
    return paths, np.array([p.parent.name for p in paths])


def mixed_precision(known_top: np.ndarray, right: np.ndarray, unknown_top: np.ndarray, t: float) -> tuple[float, float]:
    """(share of sure answers right on the 45:37 mix, share of known photos sure) at threshold ``t``."""
    weight = UNKNOWN_PER_KNOWN * len(known_top) / len(unknown_top)
    sure = known_top >= t
    denominator = sure.sum() + weight * (unknown_top >= t).sum()
    return (float((sure & right).sum() / denominator) if denominator else float("nan")), float(sure.mean())


def oracle_sure(known_top: np.ndarray, right: np.ndarray, unknown_top: np.ndarray) -> float:
    """The largest share of known photos sure with sure answers >= PRECISION right on this very mix."""
    best = 0.0
    for t in np.unique(known_top):
        precision, share = mixed_precision(known_top, right, unknown_top, float(t))
        if precision >= PRECISION:
            best = max(best, share)
    return best


def one_split(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    species = np.unique(y)
    held = set(rng.choice(species, HELD_OUT, replace=False).tolist())
    known = np.array([label not in held for label in y])
    test = np.zeros(len(y), dtype=bool)
    for name in species[[s not in held for s in species]]:
        rows = np.flatnonzero(y == name)
        test[rng.choice(rows, round(len(rows) * TEST_SHARE), replace=False)] = True
    train = known & ~test
    classes = sorted(set(y[train]))
    selection = image.select_head(x[train], y[train], classes, 3, seed, 0.05)
    head = image.fit_head(x[train], y[train], classes, selection.c, selection.temperature)
    sure = fit_sure(
        selection.probs.max(axis=1),
        selection.probs.argmax(axis=1) == selection.truth,
        image.held_out_tops(x[train], y[train], classes, selection.c, selection.temperature),
        precision=PRECISION,
    )
    pk, _ = head.scores(x[known & test])
    pu, _ = head.scores(x[~known])
    known_top, unknown_top = pk.max(axis=1), pu.max(axis=1)
    right = np.asarray(classes)[pk.argmax(axis=1)] == y[known & test]
    refuse_at = np.quantile(1 - known_top, 0.95)
    precision, share = mixed_precision(known_top, right, unknown_top, sure.threshold)
    return {
        "unknown_refused_at_95_kept": float(((1 - unknown_top) > refuse_at).mean()),
        "unknown_auroc": auroc(1 - known_top, 1 - unknown_top),
        "known_accuracy": float(right.mean()),
        "sure_threshold": sure.threshold,
        "sure_right": precision,
        "known_sure": share,
        # today's answer without bands: every photo the abstention keeps named, as if sure
        "recognised_right": mixed_precision(known_top, right, unknown_top, 1 - selection.thresholds["max_prob"])[0],
        "oracle_known_sure_at_97": oracle_sure(known_top, right, unknown_top),
    }


def main() -> dict[str, Any]:
    if not OXFORD.is_dir():
        out: dict[str, Any] = {"skipped": "../shared/data/oxford102_dev is not present"}
        save("garden_bands", out)
        return out
    paths, y = photos()
    results: dict[str, Any] = {}
    for name, variants in OPTIONS.items():
        try:
            for variant in variants:
                weights_path(variant)
        except BungaError as err:
            results[name] = {"skipped": str(err)}
            continue
        x = joined([features(v, paths, "oxford102") for v in variants])[:, :-IMAGENET]
        splits = [one_split(x, y, seed) for seed in range(SPLITS)]
        results[name] = {
            key: {
                "mean": float(np.nanmean([s[key] for s in splits])),
                "std": float(np.nanstd([s[key] for s in splits])),
            }
            for key in splits[0]
        }
        print(name, {k: f"{v['mean']:.3f}±{v['std']:.3f}" for k, v in results[name].items()})
    out = {"protocol": f"oxford102_dev, {79 - HELD_OUT} known / {HELD_OUT} held out, {SPLITS} splits", **results}
    save("garden_bands", out)
    return out


if __name__ == "__main__":
    main()
