"""Exploratory (#12, closed-set goal 0.96): does Lite0 do better on tf_flowers at another input size,
or with its embedding transformed before the linear head? Same protocols as benchmarks/backbones.py
(5-fold macro-F1 at C=1, held-out species, the not-a-flower rule). Graphs at other sizes are built by
bunga's own builder into benchmarks/.work/explore; features at 224 come from benchmarks/backbones.py.
Measured on 2026-11-28 (224 px is what bunga ships):

  input 192 px: macro-F1 0.932, unknown AUROC 0.766 / 17.5 % refused, not a flower 93.2 %
  input 224 px: macro-F1 0.946, unknown AUROC 0.766 / 18.1 % refused, not a flower 93.3 %
  input 256 px: macro-F1 0.935, unknown AUROC 0.763 / 17.2 % refused, not a flower 94.3 %
  input 288 px: macro-F1 0.936, unknown AUROC 0.772 / 15.9 % refused, not a flower 91.8 %
  embedding, signed square root: macro-F1 0.932, AUROC 0.765
  each tapped block at unit length: 0.946, 0.766 (identical: the graph's taps are already comparable)
  features standardised per dimension: macro-F1 0.932, AUROC 0.781 / 14.8 % refused
  the 1280 head channels alone (no taps): macro-F1 0.921, AUROC 0.750

Nothing beats what ships. Run: python -m research.input_explore"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from benchmarks.harness.common import SHARED_FLOWERS, WORK
from benchmarks.quality.backbones import features, joined, quality
from benchmarks.quality.not_flower import NONFLOWER
from benchmarks.quality.photo_quality import cv_f1, held_out_species, load

from bunga.imaging import load_photo, to_tensor
from bunga.models import lite_graph
from bunga.models.backbone import EMBEDDING_DIM, HEAD_DIM, TAP_BLOCKS, TAP_CHANNELS, weights_path
from bunga.models.unit_rows import l2_normalise
from bunga.predict import serving_session

SIZES = (192, 256, 288)
OUT = WORK / "explore"


def at_size(size: int, paths: list[Path], tag: str) -> np.ndarray:
    """(N, embedding | ImageNet probabilities) of Lite0 with its input at ``size`` px, cached."""
    target = OUT / f"{tag}-lite0-{size}.npy"
    if target.is_file():
        cached: np.ndarray = np.load(target)
        return cached
    name = f"efficientnet-lite0@{size}"
    lite_graph.VARIANTS[name] = (1.0, 1.0, size)
    graph = OUT / f"lite0-{size}.onnx"
    OUT.mkdir(parents=True, exist_ok=True)
    graph.write_bytes(lite_graph.build_backbone(weights_path(), TAP_BLOCKS, name))
    session = serving_session(graph, None)
    rows = []
    for at in range(0, len(paths), 32):
        batch = np.stack([to_tensor(load_photo(p, 10**9, 1, draft_to=size)[0], size) for p in paths[at : at + 32]])
        rows.append(np.concatenate(session.run(["embedding", "imagenet"], {"input": batch}), axis=1))
    out = np.concatenate(rows).astype(np.float32)
    np.save(target, out)
    return out


def per_block(x: np.ndarray) -> np.ndarray:
    """Each tapped block and the head's channels at unit length, side by side."""
    edges = np.cumsum([HEAD_DIM, *TAP_CHANNELS[:-1]])
    return np.concatenate([l2_normalise(p.copy()) for p in np.split(x, edges, axis=1)], axis=1)


def main() -> None:
    pairs, y = load(SHARED_FLOWERS)
    flowers, others = [p for p, _ in pairs], sorted(NONFLOWER.glob("*.jpg"))
    for size in SIZES:
        print(size, quality(joined([at_size(size, flowers, "tf_flowers")]), y, joined([at_size(size, others, "nf")])))
    x = features("efficientnet-lite0", flowers, "tf_flowers")[:, :EMBEDDING_DIM].astype(np.float64)
    classes = sorted(set(y))
    variants = {
        "shipped": x,
        "signed square root": np.sqrt(np.maximum(x, 0)),
        "each block at unit length": per_block(x),
        "standardised": (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-6),
        "head channels alone": x[:, :HEAD_DIM],
    }
    for name, z in variants.items():
        z = z.astype(np.float32)
        f1 = float(np.mean(cv_f1(z, y, classes, choose=False)))
        print(f"{name}: macro-F1 {f1:.3f}, unknown {held_out_species(z, y, classes)['max_prob']}")


if __name__ == "__main__":
    main()
