"""Answers a visitor can trust (#38): which head and which sure score keep a "sure" band as the
garden adds photos, and what a pool of other flowers (outlier exposure) buys, on
../shared/data/oxford102_dev (development only, never shipped).

Protocol, per split (5 splits, seeded): 16 species are known (as many as the hidden garden collection
of the issue, where the head saturated), 19 held out (untaught), 20 form the pool (10 photos each, one
class ``other_flowers``); known photos 70/30 into training and test. Photos per known species in training: as they come (21), 40 and 80 (each training photo's
mirror image and 60-80 % crops of it and of its mirror, embedded by bunga's Lite0 graph; test photos
are never augmented). Heads on the unit-length embeddings: ``svm`` (bunga's today: class-balanced
linear SVM, strength and temperature by 3-fold CV) and ``logreg`` (multinomial logistic regression,
C = 1, class-balanced). Sure scores: ``prob`` (top probability in float32, as served) and ``margin``
(top-1 minus top-2 logit, float64). Each sure threshold is fitted as `bunga train` fits it
(bunga.models.bands.fit_sure on out-of-fold training scores, with held-out-class stand-ins), then
judged on the test mix weighted 45:37 (known : untaught):
- known photos sure, and the share of sure answers right, at the fitted threshold;
- untaught photos refused at the abstention threshold that keeps 95 % of known test photos (refused:
  its top class is the pool, or 1 - top probability of the named classes over the threshold);
- with the pool, the share of known test photos whose top class is the pool (lost to it).
Run: python -m benchmarks.quality.trust_bands"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from benchmarks.harness.common import SHARED_FLOWERS, WORK, save
from benchmarks.quality.backbones import IMAGENET, features, graph, key
from bunga.imaging import load_photo, to_tensor
from bunga.models import image
from bunga.models.bands import NEVER, NEVER_MARGIN, UNKNOWN_PER_KNOWN, fit_sure
from bunga.models.unit_rows import l2_normalise
from bunga.predict import serving_session

OXFORD = SHARED_FLOWERS.parent / "oxford102_dev"
POOL = "other_flowers"
SPLITS, KNOWN, HELD_OUT, POOL_SPECIES, POOL_PHOTOS, TEST_SHARE, PRECISION = 5, 16, 19, 20, 10, 0.3, 0.97
PER_SPECIES = (None, 40, 80)  # training photos per known species: as they come, then augmented
VARIANT = "efficientnet-lite0"


def photos() -> tuple[list[Path], np.ndarray]:
    paths = sorted(OXFORD.glob("*/*.jpg"))
    return paths, np.array([p.parent.name for p in paths])


def _views(photo: Image.Image, rng: random.Random) -> list[Image.Image]:
    """The mirror image, a 60-80 % crop and a crop of the mirror image."""
    mirror = ImageOps.mirror(photo)
    out = [mirror]
    for source in (photo, mirror):
        w, h = source.size
        share = rng.uniform(0.6, 0.8)
        cw, ch = round(w * share), round(h * share)
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        out.append(source.crop((left, top, left + cw, top + ch)))
    return out


def augmented(paths: list[Path]) -> np.ndarray:
    """(N, 3, embedding) of each photo's three augmented views, cached per code version."""
    target = WORK / "trust" / f"oxford102-views-{key()}.npy"
    if target.is_file():
        return np.load(target)
    session = serving_session(graph(VARIANT), None)
    rows = []
    rng = random.Random(0)
    for at in range(0, len(paths), 16):
        batch = []
        for path in paths[at : at + 16]:
            photo, _ = load_photo(path, 10**9, 1)
            batch += [to_tensor(view, 224) for view in _views(photo, rng)]
        (embedding,) = session.run(["embedding"], {"input": np.stack(batch)})
        rows.append(embedding.reshape(-1, 3, embedding.shape[1]))
    out = np.concatenate(rows).astype(np.float32)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, out)
    return out


Fit = Callable[[np.ndarray, np.ndarray, list[str]], Callable[[np.ndarray], np.ndarray]]  # -> logits of rows


def svm_head(x: np.ndarray, y: np.ndarray, classes: list[str]) -> Fit:
    """bunga's head: strength and temperature chosen once by 3-fold CV on the whole training split,
    then every fit (out of fold, without a class, final) with them."""
    selection = image.select_head(x, y, classes, 3, 0, 0.05)

    def fit(xs: np.ndarray, ys: np.ndarray, names: list[str]) -> Callable[[np.ndarray], np.ndarray]:
        head = image.fit_head(xs, ys, names, selection.c, selection.temperature)
        coef, intercept = head.coef.T.astype(np.float64), head.intercept.astype(np.float64)
        return lambda rows: l2_normalise(rows).astype(np.float64) @ coef + intercept

    return fit


def logreg_head(x: np.ndarray, y: np.ndarray, classes: list[str]) -> Fit:
    """Multinomial logistic regression, C = 1, class-balanced."""
    from sklearn.linear_model import LogisticRegression

    def fit(xs: np.ndarray, ys: np.ndarray, names: list[str]) -> Callable[[np.ndarray], np.ndarray]:
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
        model.fit(l2_normalise(xs), ys)
        order = [list(model.classes_).index(c) for c in names]
        coef, intercept = model.coef_[order].T, model.intercept_[order]
        return lambda rows: l2_normalise(rows).astype(np.float64) @ coef + intercept

    return fit


HEADS: dict[str, Callable[[np.ndarray, np.ndarray, list[str]], Fit]] = {"svm": svm_head, "logreg": logreg_head}


def softmax32(logits: np.ndarray) -> np.ndarray:
    """Probabilities as the served float32 graph computes them (they saturate at 1.0)."""
    z = logits.astype(np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def score(logits: np.ndarray, named: np.ndarray, kind: str) -> np.ndarray:
    """The sure score of each row over the named classes (the pool excluded): top probability
    (float32) or the margin between the two best named logits (float64)."""
    if kind == "prob":
        return softmax32(logits)[:, named].max(axis=1)
    top2 = np.sort(logits[:, named], axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def oof_and_stand_ins(
    head: Fit, x: np.ndarray, y: np.ndarray, classes: list[str], seed: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Out-of-fold logits of the training rows (3 folds), and the logits that photos of a held-out
    named class get from heads trained without it (8 classes, each in turn), as `bunga train` does."""
    from sklearn.model_selection import StratifiedKFold

    logits = np.zeros((len(y), len(classes)))
    for train, test in StratifiedKFold(3, shuffle=True, random_state=seed).split(x, y):
        logits[test] = head(x[train], y[train], classes)(x[test])
    named = [c for c in classes if c != POOL]
    stand_ins = []
    for held in named[:: max(1, -(-len(named) // 8))]:
        rest = [c for c in classes if c != held]
        keep = y != held
        fitted = head(x[keep], y[keep], rest)(x[y == held])
        full = np.full((len(fitted), len(classes)), -np.inf)
        full[:, [classes.index(c) for c in rest]] = fitted
        stand_ins.append(full)
    return logits, np.array([classes.index(label) for label in y]), stand_ins


def judge(
    prepare: Callable[[np.ndarray, np.ndarray, list[str]], Fit],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_known: np.ndarray,
    y_known: np.ndarray,
    x_unknown: np.ndarray,
    seed: int,
) -> dict[str, float]:
    classes = sorted(set(y_train))
    named = np.array([c != POOL for c in classes])
    head = prepare(x_train, y_train, classes)
    logits_oof, truth, stand_ins = oof_and_stand_ins(head, x_train, y_train, classes, seed)
    final = head(x_train, y_train, classes)
    known_logits, unknown_logits = final(x_known), final(x_unknown)
    out: dict[str, float] = {}
    probs_k, probs_u = softmax32(known_logits), softmax32(unknown_logits)
    pool_k = np.asarray(classes)[probs_k.argmax(axis=1)] == POOL if POOL in classes else np.zeros(len(x_known), bool)
    pool_u = np.asarray(classes)[probs_u.argmax(axis=1)] == POOL if POOL in classes else np.zeros(len(x_unknown), bool)
    top_k, top_u = probs_k[:, named].max(axis=1), probs_u[:, named].max(axis=1)
    kept_k = ~pool_k
    threshold = np.quantile(1 - top_k[kept_k], min(1.0, 0.95 / max(kept_k.mean(), 1e-9))) if kept_k.any() else 1.0
    refused_k = pool_k | ((1 - top_k) > threshold)
    refused_u = pool_u | ((1 - top_u) > threshold)
    out["known_lost_to_pool"] = float(pool_k.mean())
    out["known_kept"] = float(1 - refused_k.mean())
    out["unknown_refused_at_95_kept"] = float(refused_u.mean())
    names = np.asarray(classes)[named]
    right = names[known_logits[:, named].argmax(axis=1)] == y_known
    out["known_accuracy"] = float(right.mean())
    oof_named = logits_oof[:, named]
    for kind in ("prob", "margin"):
        oof_score = score(logits_oof, named, kind)
        oof_right = np.asarray(classes)[np.where(named)[0][oof_named.argmax(axis=1)]] == np.asarray(classes)[truth]
        in_named = named[truth]
        stand = np.concatenate([score(s, named, kind) for s in stand_ins]) if stand_ins else np.zeros(0)
        never = NEVER if kind == "prob" else NEVER_MARGIN
        fit = fit_sure(oof_score[in_named], oof_right[in_named], stand, precision=PRECISION, never=never)
        s_k, s_u = score(known_logits, named, kind), score(unknown_logits, named, kind)
        sure_k = (s_k >= fit.threshold) & ~refused_k
        sure_u = (s_u >= fit.threshold) & ~refused_u
        weight = UNKNOWN_PER_KNOWN * len(s_k) / max(len(s_u), 1)
        denominator = sure_k.sum() + weight * sure_u.sum()
        out[f"{kind}_never"] = float(fit.known_sure == 0.0)  # no threshold met the precision
        out[f"{kind}_threshold"] = fit.threshold
        out[f"{kind}_known_sure"] = float(sure_k.mean())
        out[f"{kind}_sure_right"] = float((sure_k & right).sum() / denominator) if denominator else float("nan")
    return out


def one_split(x: np.ndarray, views: np.ndarray, y: np.ndarray, seed: int) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    species = np.unique(y)
    chosen = rng.permutation(species)
    held, pool = set(chosen[:HELD_OUT]), set(chosen[HELD_OUT : HELD_OUT + POOL_SPECIES])
    known_species = sorted(chosen[HELD_OUT + POOL_SPECIES : HELD_OUT + POOL_SPECIES + KNOWN])
    test = np.zeros(len(y), dtype=bool)
    for name in known_species:
        rows = np.flatnonzero(y == name)
        test[rng.choice(rows, round(len(rows) * TEST_SHARE), replace=False)] = True
    known = np.isin(y, known_species)
    train_rows = np.flatnonzero(known & ~test)
    pool_rows = np.concatenate([rng.choice(np.flatnonzero(y == s), POOL_PHOTOS, replace=False) for s in sorted(pool)])
    results: dict[str, dict[str, float]] = {}
    for per_species in PER_SPECIES:
        x_train, y_train = x[train_rows], y[train_rows]
        if per_species is not None:
            extra_x, extra_y = [], []
            for name in known_species:
                rows = train_rows[y[train_rows] == name]
                wanted = max(0, per_species - len(rows))
                picks = [(r, v) for v in range(3) for r in rows][:wanted]
                extra_x += [views[r, v] for r, v in picks]
                extra_y += [name] * len(picks)
            x_train = np.concatenate([x_train, np.asarray(extra_x)])
            y_train = np.concatenate([y_train, np.asarray(extra_y)])
        regime = f"{per_species or 'as-is'}"
        for pooled in (False, True):
            xt, yt = x_train, y_train
            if pooled:
                xt = np.concatenate([xt, x[pool_rows]])
                yt = np.concatenate([yt, np.full(len(pool_rows), POOL)])
            for name, head in HEADS.items():
                label = f"{name}{' + pool' if pooled else ''}, {regime} per species"
                results[label] = judge(head, xt, yt, x[known & test], y[known & test], x[np.isin(y, list(held))], seed)
                print(seed, label, {k: round(v, 3) for k, v in results[label].items()}, flush=True)
    return results


Split = Callable[[np.ndarray, np.ndarray, np.ndarray, int], dict[str, dict[str, float]]]


def over_splits(name: str, protocol: str, one_split: Split) -> dict[str, Any]:
    """Run ``one_split`` on each seeded split of oxford102_dev (features and augmented views from the
    cache) and save each figure's mean and std over the splits as results/``name``.json."""
    if not OXFORD.is_dir():
        out: dict[str, Any] = {"skipped": "../shared/data/oxford102_dev is not present"}
        save(name, out)
        return out
    paths, y = photos()
    x = features(VARIANT, paths, "oxford102")[:, :-IMAGENET]
    views = augmented(paths)
    splits = [one_split(x, views, y, seed) for seed in range(SPLITS)]
    labels = [label for label in splits[0] if all(label in s for s in splits)]
    results = {
        label: {
            metric: {
                "mean": float(np.nanmean([s[label][metric] for s in splits])),
                "std": float(np.nanstd([s[label][metric] for s in splits])),
            }
            for metric in splits[0][label]
        }
        for label in labels
    }
    out = {"protocol": protocol, **results}
    save(name, out)
    return out


def main() -> dict[str, Any]:
    protocol = (
        f"oxford102_dev: {KNOWN} known / {HELD_OUT} untaught / {POOL_SPECIES} "
        f"pool species ({POOL_PHOTOS} photos each), {SPLITS} splits; sure answers judged on the 45:37 mix"
    )
    return over_splits("trust_bands", protocol, one_split)


if __name__ == "__main__":
    main()
