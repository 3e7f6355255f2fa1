"""The photo model: cached backbone embeddings, a class-balanced linear head, an abstention score,
and one exported inference graph (backbone + head + softmax)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from bunga.evaluate import auroc
from bunga.files import atomic_write_bytes
from bunga.imaging import INPUT_SIZE, photo_tensor
from bunga.models.backbone import EMBEDDING_DIM, backbone_id, make_embedder
from bunga.models.export import torch_to_onnx

C_GRID = (0.5, 2.0, 8.0, 32.0, 128.0)
ABSTAIN_METHODS = ("max_prob", "centroid")
Progress = Callable[[int, int, float], None]  # done, total, images per second


class EmbeddingCache:
    """Embeddings on disk keyed by photo sha256 and backbone id; each entry carries its own hash,
    so a torn or corrupt entry is detected and recomputed, never used."""

    def __init__(self, root: Path, backbone: str) -> None:
        self.folder = root / "embeddings" / backbone

    def _path(self, sha: str) -> Path:
        return self.folder / sha[:2] / f"{sha}.bin"

    def get(self, sha: str) -> np.ndarray | None:
        """The cached embedding, or None when absent or corrupt."""
        path = self._path(sha)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        payload, check = data[:-32], data[-32:]
        if len(payload) != EMBEDDING_DIM * 4 or hashlib.sha256(payload).digest() != check:
            return None
        vector: np.ndarray = np.frombuffer(payload, dtype=np.float32).copy()
        return vector

    def put(self, sha: str, vector: np.ndarray) -> None:
        """Store an embedding atomically."""
        payload = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        atomic_write_bytes(self._path(sha), payload + hashlib.sha256(payload).digest())


class BackboneRunner:
    """Runs the backbone through onnxruntime (several times faster than torch eager on CPU).

    The ONNX file is exported from torch once per backbone id and kept in the cache folder.
    """

    def __init__(self, cache_dir: Path, tta: bool = False) -> None:
        import onnxruntime as ort

        self.id = backbone_id(tta)
        path = cache_dir / "backbones" / f"{self.id}.onnx"
        if not path.is_file():
            probe = np.zeros((2, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
            tmp = path.with_name(f".{path.name}.tmp")
            torch_to_onnx(make_embedder(tta=tta), probe, ["embedding"], tmp)
            tmp.replace(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, 224, 224) preprocessed images -> (N, 1280) embeddings."""
        return np.asarray(self.session.run(["embedding"], {"input": batch})[0], dtype=np.float32)


def embed_photos(
    photos: Sequence[tuple[Path, str]],
    cache: EmbeddingCache,
    runner: BackboneRunner,
    batch_size: int,
    max_pixels: int,
    on_progress: Progress | None = None,
) -> tuple[np.ndarray, int]:
    """Embeddings for (path, sha256) pairs in order; only photos missing from the cache are computed.

    Returns the matrix and how many were computed.
    """
    out = np.zeros((len(photos), EMBEDDING_DIM), dtype=np.float32)
    todo: list[int] = []
    for i, (_, sha) in enumerate(photos):
        cached = cache.get(sha)
        if cached is None:
            todo.append(i)
        else:
            out[i] = cached
    start = time.perf_counter()
    for offset in range(0, len(todo), batch_size):
        chunk = todo[offset : offset + batch_size]
        batch = np.stack([photo_tensor(photos[i][0], max_pixels) for i in chunk])
        vectors = runner.embed(batch)
        for i, vector in zip(chunk, vectors, strict=True):
            out[i] = vector
            cache.put(photos[i][1], vector)
        if on_progress is not None:
            done = offset + len(chunk)
            on_progress(done, len(todo), done / max(time.perf_counter() - start, 1e-9))
    return out, len(todo)


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


@dataclass
class PhotoHead:
    """A linear softmax head over normalised embeddings, with class centroids for abstention."""

    classes: list[str]
    coef: np.ndarray  # (C, D)
    intercept: np.ndarray  # (C,)
    centroids: np.ndarray  # (C, D), unit length
    c: float

    def scores(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and cosine similarity to each class centroid."""
        z = l2_normalise(embeddings)
        logits = z @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs, z @ self.centroids.T


def fit_head(x: np.ndarray, y: np.ndarray, classes: list[str], c: float) -> PhotoHead:
    """Fit the class-balanced logistic-regression head (multinomial) on normalised embeddings."""
    z = l2_normalise(x)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    model.fit(z, y)
    order = [list(model.classes_).index(name) for name in classes]
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: sigmoid(w.x+b) == softmax([-(w.x+b)/2, (w.x+b)/2])
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    centroids = l2_normalise(np.stack([z[y == name].mean(axis=0) for name in classes]))
    return PhotoHead(
        classes, coef[order].astype(np.float32), intercept[order].astype(np.float32), centroids.astype(np.float32), c
    )


def abstain_score(probs: np.ndarray, sims: np.ndarray, method: str) -> np.ndarray:
    """Higher means 'less like any known species'."""
    best: np.ndarray = probs.max(axis=1) if method == "max_prob" else sims.max(axis=1)
    return 1.0 - best


def _folds(y: np.ndarray, wanted: int, seed: int) -> StratifiedKFold | None:
    _, counts = np.unique(y, return_counts=True)
    n = min(wanted, int(counts.min()))
    return StratifiedKFold(n_splits=n, shuffle=True, random_state=seed) if n >= 2 else None


def choose_c(x: np.ndarray, y: np.ndarray, classes: list[str], folds: int, seed: int) -> float:
    """The regularisation strength with the lowest cross-validated log-loss on the training split
    (a proper scoring rule: it rewards calibrated probabilities, which abstention relies on)."""
    splitter = _folds(y, folds, seed)
    if splitter is None:
        return 8.0
    index = {c: i for i, c in enumerate(classes)}
    truth = np.array([index[label] for label in y])
    best, best_loss = C_GRID[-1], float("inf")
    for c in C_GRID:
        probs = np.zeros((len(y), len(classes)))
        for train_idx, test_idx in splitter.split(x, y):
            probs[test_idx] = fit_head(x[train_idx], y[train_idx], classes, c).scores(x[test_idx])[0]
        loss = float(-np.log(np.clip(probs[np.arange(len(y)), truth], 1e-12, 1)).mean())
        if loss < best_loss - 1e-9:
            best, best_loss = c, loss
    return best


def calibrate(
    x: np.ndarray, y: np.ndarray, classes: list[str], c: float, folds: int, seed: int, max_refused: float
) -> dict[str, float]:
    """Per method, the threshold that refuses at most ``max_refused`` of known photos, from
    out-of-fold scores on the training split (the test split stays untouched)."""
    splitter = _folds(y, folds, seed)
    scores: dict[str, list[np.ndarray]] = {m: [] for m in ABSTAIN_METHODS}
    if splitter is None:
        head = fit_head(x, y, classes, c)
        probs, sims = head.scores(x)
        for method in ABSTAIN_METHODS:
            scores[method].append(abstain_score(probs, sims, method))
    else:
        for train_idx, test_idx in splitter.split(x, y):
            head = fit_head(x[train_idx], y[train_idx], classes, c)
            probs, sims = head.scores(x[test_idx])
            for method in ABSTAIN_METHODS:
                scores[method].append(abstain_score(probs, sims, method))
    return {m: float(np.quantile(np.concatenate(s), 1 - max_refused)) for m, s in scores.items()}


def open_set(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: list[str],
    c: float,
    folds: int,
    seed: int,
    max_refused: float,
) -> dict[str, dict[str, float]]:
    """Hold each class out in turn: train on the others, score their test photos (known) against
    every photo of the held-out class (unknown). Mean AUROC and share of unknowns refused."""
    results: dict[str, dict[str, list[float]]] = {m: {"auroc": [], "refused": []} for m in ABSTAIN_METHODS}
    for held in classes:
        known = [k for k in classes if k != held]
        keep_train, keep_test = y_train != held, y_test != held
        head = fit_head(x_train[keep_train], y_train[keep_train], known, c)
        thresholds = calibrate(x_train[keep_train], y_train[keep_train], known, c, folds, seed, max_refused)
        unknown_x = np.concatenate([x_train[~keep_train], x_test[~keep_test]])
        pk, sk = head.scores(x_test[keep_test])
        pu, su = head.scores(unknown_x)
        for method in ABSTAIN_METHODS:
            s_known, s_unknown = abstain_score(pk, sk, method), abstain_score(pu, su, method)
            results[method]["auroc"].append(auroc(s_known, s_unknown))
            results[method]["refused"].append(float((s_unknown > thresholds[method]).mean()))
    return {m: {k: float(np.nanmean(v)) for k, v in r.items()} for m, r in results.items()}


def inference_graph(head: PhotoHead, tta: bool) -> Any:
    """Torch module: preprocessed images -> (probabilities, centroid similarities)."""
    import torch

    embedder = make_embedder(tta=tta)

    class Graph(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.embedder = embedder
            self.register_buffer("coef", torch.from_numpy(head.coef.T.copy()))
            self.register_buffer("intercept", torch.from_numpy(head.intercept.copy()))
            self.register_buffer("centroids", torch.from_numpy(head.centroids.T.copy()))

        def forward(self, x: Any) -> tuple[Any, Any]:
            z = torch.nn.functional.normalize(self.embedder(x), dim=1, eps=1e-12)
            probs = torch.softmax(z @ self.coef + self.intercept, dim=1)
            return probs, z @ self.centroids

    return Graph().eval()


def export_graph(head: PhotoHead, tta: bool, check_x: np.ndarray, path: Path) -> float:
    """Export backbone + head + softmax as one ONNX file; returns the ONNX-vs-torch difference."""
    return torch_to_onnx(inference_graph(head, tta), check_x, ["probabilities", "similarity"], path)
