"""Exploratory (#12): scores for "a flower I was not taught", on tf_flowers with each class held out
in turn (75/25 split as in benchmarks/photo_quality.py). For each score: AUROC, the share of the
held-out class refused and of known test photos kept at the threshold bunga would calibrate (out of
fold, 5 % refused), and the share refused at the oracle threshold that keeps exactly 95 % of the known
test photos. Uses the Lite0 features cached by benchmarks/backbones.py.
Run: python -m research.open_set_explore"""

from __future__ import annotations

import numpy as np
from benchmarks.harness.common import SHARED_FLOWERS
from benchmarks.quality.backbones import features
from benchmarks.quality.photo_quality import load
from sklearn.model_selection import StratifiedKFold, train_test_split

from bunga.models import image
from bunga.models.metrics import auroc

MAX_REFUSED = 0.05


def knn_distance(z: np.ndarray, bank: np.ndarray, k: int = 10, skip_self: bool = False) -> np.ndarray:
    s = np.sort(z @ bank.T, axis=1)[:, ::-1]
    return 1.0 - s[:, int(skip_self) : int(skip_self) + k].mean(axis=1)


def scores(head: image.PhotoHead, z_bank: np.ndarray, x: np.ndarray, skip_self: bool = False) -> dict[str, np.ndarray]:
    probs, sims = head.scores(x)
    logits = np.log(np.clip(probs, 1e-30, 1))  # softmax(T * margins): log-probs up to a per-row constant
    z = image.l2_normalise(x)
    return {
        "max_prob": 1.0 - probs.max(axis=1),
        "centroid": 1.0 - sims.max(axis=1),
        "margin_gap": -(np.sort(logits, axis=1)[:, -1] - np.sort(logits, axis=1)[:, -2]),
        "knn10": knn_distance(z, z_bank, skip_self=skip_self),
    }


def main() -> None:
    pairs, y = load(SHARED_FLOWERS)
    x = features("efficientnet-lite0", [p for p, _ in pairs], "tf_flowers")[:, :-1000]
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=0)
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    for held in sorted(set(y)):
        known = sorted(set(y) - {held})
        tr = idx_train[y[idx_train] != held]
        te = idx_test[y[idx_test] != held]
        unknown = np.flatnonzero(y == held)
        sel = image.select_head(x[tr], y[tr], known, 3, 0, MAX_REFUSED)
        head = image.fit_head(x[tr], y[tr], known, sel.c, sel.temperature)
        bank = image.l2_normalise(x[tr])
        # out-of-fold scores of the training photos: bunga's calibration
        oof: dict[str, list[np.ndarray]] = {}
        for a, b in StratifiedKFold(3, shuffle=True, random_state=0).split(x[tr], y[tr]):
            h = image.fit_head(x[tr][a], y[tr][a], known, sel.c, sel.temperature)
            for name, v in scores(h, bank[a], x[tr][b]).items():
                oof.setdefault(name, []).append(v)
        s_known, s_unknown = scores(head, bank, x[te]), scores(head, bank, x[unknown])
        s_fit = scores(head, bank, x[tr], skip_self=True)  # in-sample: how bunga.models.image.open_set sets it
        for name in s_known:
            t = np.quantile(np.concatenate(oof[name]), 1 - MAX_REFUSED)
            t_fit = np.quantile(s_fit[name], 1 - MAX_REFUSED)
            oracle = np.quantile(s_known[name], 0.95)
            rows.setdefault(name, []).append(
                (
                    auroc(s_known[name], s_unknown[name]),
                    float((s_unknown[name] > t).mean()),
                    float((s_known[name] <= t).mean()),
                    float((s_unknown[name] > oracle).mean()),
                    float((s_unknown[name] > t_fit).mean()),
                    float((s_known[name] <= t_fit).mean()),
                )
            )
    for name, values in rows.items():
        a, refused, kept, oracle, refused_fit, kept_fit = np.mean(values, axis=0)
        print(
            f"{name}: AUROC {a:.3f}; calibrated out of fold: {refused:.1%} refused, {kept:.1%} known kept; "
            f"at 95 % kept: {oracle:.1%} refused; in-sample threshold: {refused_fit:.1%} refused, "
            f"{kept_fit:.1%} known kept"
        )


if __name__ == "__main__":
    main()
