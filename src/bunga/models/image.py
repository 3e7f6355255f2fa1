"""The photo model: cached backbone embeddings, a class-balanced linear head, an abstention score,
and one exported inference graph (backbone + head + softmax)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from bunga.errors import BungaError
from bunga.files import atomic_write_bytes
from bunga.imaging import load_photo, photo_tensor, to_tensor
from bunga.models.backbone import DEFAULT, IMAGENET_CLASSES, Backbone, backbone_id, weights_path
from bunga.models.bands import LOGITS_OUTPUT, MARGIN, TOP_PROBABILITY, pool_index, sure_values
from bunga.models.export import onnx_session
from bunga.models.linear_svm import LinearModel, Problem, fit
from bunga.models.lite_graph import build_once
from bunga.models.metrics import auroc
from bunga.models.not_flower import IMAGENET_OUTPUT
from bunga.models.observation import CountFit, Scores, fit_counts, log_probabilities
from bunga.models.signature import SIGNATURE_DIM, SIGNATURE_OUTPUT, projection, signatures
from bunga.models.unit_rows import l2_normalise
from bunga.schemas import OTHER_FLOWERS

C_GRID = (0.3, 1.0, 3.0)  # linear SVM strengths chosen from by cross-validation
ABSTAIN_METHODS = ("max_prob", "centroid")
Progress = Callable[[int, int, float], None]  # done, total, images per second


class EmbeddingCache:
    """Embeddings on disk keyed by photo sha256 and backbone id; each entry carries its own hash,
    so a torn or corrupt entry is detected and recomputed, never used."""

    def __init__(self, root: Path, backbone: str, dim: int = DEFAULT.feature_dim) -> None:
        self.folder = root / "embeddings" / backbone
        self.dim = dim

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
        if len(payload) != self.dim * 4 or hashlib.sha256(payload).digest() != check:
            return None
        vector: np.ndarray = np.frombuffer(payload, dtype=np.float32).copy()
        return vector

    def put(self, sha: str, vector: np.ndarray) -> None:
        """Store an embedding atomically."""
        payload = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        atomic_write_bytes(self._path(sha), payload + hashlib.sha256(payload).digest())


class BackboneRunner:
    """Runs the backbone through onnxruntime (several times faster than torch eager on CPU).

    The ONNX file is built from the weight file once per backbone id (no torch) and kept in the
    cache folder; the session is opened on first use (a retrain whose photos are all cached never
    opens it).
    """

    def __init__(self, cache_dir: Path, tta: bool = False, spec: Backbone = DEFAULT) -> None:
        self.spec = spec
        self.id = backbone_id(tta, spec)
        self.path = cache_dir / "backbones" / f"{self.id}.onnx"
        build_once(self.path, weights_path(spec.name), spec.taps, tta=tta, variant=spec.name)

    @cached_property
    def session(self) -> Any:
        """The onnxruntime session of the backbone graph."""
        return onnx_session(self.path)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) preprocessed images (S: the backbone's size) -> (N, embedding dim) embeddings."""
        return np.asarray(self.session.run(["embedding"], {"input": batch})[0], dtype=np.float32)

    def features(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) preprocessed images -> (N, feature dim): embedding | ImageNet probabilities."""
        embedding, imagenet = self.session.run(["embedding", IMAGENET_OUTPUT], {"input": batch})
        return np.concatenate([embedding, imagenet], axis=1).astype(np.float32)


def fill_cache(
    photos: Sequence[tuple[Path, str]],
    cache: EmbeddingCache,
    runner: BackboneRunner,
    batch_size: int,
    max_pixels: int,
    on_progress: Progress | None = None,
) -> int:
    """Compute, a batch at a time, the features of the (path, sha256) pairs missing from the cache
    (or corrupt in it) and store them; how many were computed. Nothing the size of the whole set is
    held, so the backbone's working memory and the feature matrix are never needed at once."""
    todo = [i for i, (_, sha) in enumerate(photos) if cache.get(sha) is None]
    start = time.perf_counter()
    for offset in range(0, len(todo), batch_size):
        chunk = todo[offset : offset + batch_size]
        rows = runner.features(np.stack([photo_tensor(photos[i][0], max_pixels, size=runner.spec.size) for i in chunk]))
        for i, row in zip(chunk, rows, strict=True):
            cache.put(photos[i][1], row)
        if on_progress is not None:
            done = offset + len(chunk)
            on_progress(done, len(todo), done / max(time.perf_counter() - start, 1e-9))
    return len(todo)


def crop_view(photo: Image.Image) -> Image.Image:
    """The same flower seen again: a mirrored centred crop of 70 % of each side (a visitor's second,
    closer look), for fitting observation thresholds."""
    w, h = photo.size
    cw, ch = max(1, round(w * 0.7)), max(1, round(h * 0.7))
    left, top = (w - cw) // 2, (h - ch) // 2
    return ImageOps.mirror(photo.crop((left, top, left + cw, top + ch)))


def crop_features(
    photos: Sequence[tuple[Path, str]], cache: EmbeddingCache, runner: BackboneRunner, batch_size: int, max_pixels: int
) -> np.ndarray:
    """Features of each photo's crop view (``crop_view``), cached under a key derived from its sha256."""
    keys = [hashlib.sha256(f"{sha}:crop-view".encode()).hexdigest() for _, sha in photos]
    todo = [i for i, k in enumerate(keys) if cache.get(k) is None]
    for offset in range(0, len(todo), batch_size):
        chunk = todo[offset : offset + batch_size]
        views = [crop_view(load_photo(photos[i][0], max_pixels, 1)[0]) for i in chunk]
        rows = runner.features(np.stack([to_tensor(v, runner.spec.size) for v in views]))
        for i, row in zip(chunk, rows, strict=True):
            cache.put(keys[i], row)
    return cached_features([(photos[i][0], k) for i, k in enumerate(keys)], cache)


def cached_features(photos: Sequence[tuple[Path, str]], cache: EmbeddingCache) -> np.ndarray:
    """Features (embedding | ImageNet probabilities) of (path, sha256) pairs in order, all from the
    cache (see ``fill_cache``)."""
    out = np.empty((len(photos), cache.dim), dtype=np.float32)
    for i, (path, sha) in enumerate(photos):
        row = cache.get(sha)
        if row is None:
            raise BungaError(f"the cached embedding of {path} disappeared during training: run the command again")
        out[i] = row
    return out


def embed_photos(
    photos: Sequence[tuple[Path, str]],
    cache: EmbeddingCache,
    runner: BackboneRunner,
    batch_size: int,
    max_pixels: int,
    on_progress: Progress | None = None,
) -> tuple[np.ndarray, int]:
    """Features for (path, sha256) pairs in order, computing only those missing from the cache; the
    matrix and how many were computed."""
    computed = fill_cache(photos, cache, runner, batch_size, max_pixels, on_progress)
    return cached_features(photos, cache), computed


@dataclass
class PhotoHead:
    """A linear head over normalised embeddings (temperature folded into its weights), with class
    centroids for abstention."""

    classes: list[str]
    coef: np.ndarray  # (C, D)
    intercept: np.ndarray  # (C,)
    centroids: np.ndarray  # (C, D), unit length
    c: float

    def scores(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and cosine similarity to each class centroid."""
        z = l2_normalise(embeddings)
        return softmax(z @ self.coef.T + self.intercept), z @ self.centroids.T

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """The logits the probabilities come from, in float64 (for the margin sure score)."""
        z = l2_normalise(embeddings).astype(np.float64)
        out: np.ndarray = z @ self.coef.T.astype(np.float64) + self.intercept.astype(np.float64)
        return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs: np.ndarray = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs


def fit_head(x: np.ndarray, y: np.ndarray, classes: list[str], c: float, temperature: float = 1.0) -> PhotoHead:
    """Fit the class-balanced linear SVM head on normalised embeddings; probabilities are
    softmax(temperature * margins). Measured against multinomial logistic regression on the same
    embeddings: 5-fold macro-F1 on tf_flowers 0.943 against 0.938 (benchmarks/photo_quality.py)."""
    z = l2_normalise(x)
    everything = np.ones(len(y), dtype=bool)
    (model,) = fit(z, y, [Problem(c, everything, classes)])
    return _head(model, z, y, everything, c, temperature)


def _centroids(z: np.ndarray, y: np.ndarray, rows: np.ndarray, classes: list[str]) -> np.ndarray:
    """Unit-length mean direction of each class over the selected rows."""
    return l2_normalise(np.stack([z[rows & (y == name)].mean(axis=0) for name in classes]))


def _head(
    model: LinearModel, z: np.ndarray, y: np.ndarray, rows: np.ndarray, c: float, temperature: float
) -> PhotoHead:
    """A fitted SVM as a head: temperature folded into its weights, centroids of its training rows."""
    centroids = _centroids(z, y, rows, model.classes)
    return PhotoHead(
        model.classes,
        (model.coef * temperature).astype(np.float32),
        (model.intercept * temperature).astype(np.float32),
        centroids.astype(np.float32),
        c,
    )


def fit_temperature(margins: np.ndarray, truth: np.ndarray) -> float:
    """The scale of the margins whose softmax has the lowest log-loss (on out-of-fold margins),
    searched on a log grid from 0.05 to 150 in steps of 5 %."""
    rows = np.arange(len(truth))

    def loss(t: float) -> float:
        return float(-np.log(np.clip(softmax(t * margins)[rows, truth], 1e-12, 1)).mean())

    grid = np.exp(np.arange(-3.0, 5.0, 0.05))
    return float(min(grid, key=loss))


def abstain_score(probs: np.ndarray, sims: np.ndarray, method: str) -> np.ndarray:
    """Higher means 'less like any known species'."""
    best: np.ndarray = probs.max(axis=1) if method == "max_prob" else sims.max(axis=1)
    return 1.0 - best


def _folds(y: np.ndarray, wanted: int, seed: int, groups: np.ndarray | None = None) -> Any:
    """Stratified folds (grouped when ``groups`` is given: one plant's photos in one fold), or None
    when a class has too few photos to fold."""
    _, counts = np.unique(y, return_counts=True)
    n = min(wanted, int(counts.min()))
    if n < 2:
        return None
    if groups is not None:
        return StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
    return StratifiedKFold(n_splits=n, shuffle=True, random_state=seed)


@dataclass
class HeadSelection:
    """The chosen regularisation, the probability temperature, per abstention method the calibrated
    threshold, and each training photo's out-of-fold distance to the nearest centroid (for "not a
    flower")."""

    c: float
    temperature: float
    thresholds: dict[str, float]
    f1_macro: dict[float, float]
    centroid_distance: np.ndarray
    probs: np.ndarray  # out-of-fold probabilities of the training photos (in-sample when too few to fold)
    truth: np.ndarray  # their class indices
    logits: np.ndarray  # the out-of-fold logits (temperature applied) the probabilities come from
    companion_logits: np.ndarray | None = None  # companions' logits, from the fold their photo was left out of


def select_head(
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    folds: int,
    seed: int,
    max_refused: float,
    companions: np.ndarray | None = None,
    companion_of: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> HeadSelection:
    """One cross-validation pass over the training split serves three decisions: the strength with
    the best out-of-fold macro-F1, the temperature that turns its margins into calibrated
    probabilities (lowest out-of-fold log-loss), and from those out-of-fold scores the thresholds
    that refuse at most ``max_refused`` of known photos. The test split is never touched.
    ``companions`` (other views of the photos ``companion_of`` points at) are scored by the fold
    their photo was left out of; ``groups`` (observation ids) keep one plant's photos in one fold."""
    from sklearn.metrics import f1_score

    splitter = _folds(y, folds, seed, groups)
    index = {c: i for i, c in enumerate(classes)}
    truth = np.array([index[label] for label in y])
    if splitter is None:  # too few photos to cross-validate: in-sample scores, middle strength
        head = fit_head(x, y, classes, C_GRID[1])
        probs, sims = head.scores(x)
        logits = head.logits(x)
        scores = {m: abstain_score(probs, sims, m) for m in ABSTAIN_METHODS}
        thresholds = {m: float(np.quantile(v, 1 - max_refused)) for m, v in scores.items()}
        in_sample = head.logits(companions) if companions is not None else None
        return HeadSelection(C_GRID[1], 1.0, thresholds, {}, 1.0 - sims.max(axis=1), probs, truth, logits, in_sample)
    z = l2_normalise(x)
    margins = {c: np.zeros((len(y), len(classes))) for c in C_GRID}
    sims = np.zeros((len(y), len(classes)))
    z_extra = l2_normalise(companions) if companions is not None else np.zeros((0, x.shape[1]))
    of = companion_of if companion_of is not None else np.zeros(0, dtype=np.int64)
    extra = {c: np.zeros((len(z_extra), len(classes))) for c in C_GRID}
    tests = [test_idx for _, test_idx in splitter.split(x, y, groups)]
    training = [np.isin(np.arange(len(y)), test_idx, invert=True) for test_idx in tests]
    models = iter(fit(z, y, [Problem(c, rows, classes) for rows in training for c in C_GRID]))
    for test_idx, rows in zip(tests, training, strict=True):
        left_out = np.isin(of, test_idx)
        for c in C_GRID:
            model = next(models)
            margins[c][test_idx] = model.margins(z[test_idx])
            if left_out.any():
                extra[c][left_out] = model.margins(z_extra[left_out])
        sims[test_idx] = z[test_idx] @ _centroids(z, y, rows, classes).T
    f1 = {c: float(f1_score(truth, m.argmax(axis=1), average="macro")) for c, m in margins.items()}
    best = max(C_GRID, key=lambda c: (round(f1[c], 9), -c))  # ties: the stronger regularisation
    temperature = fit_temperature(margins[best], truth)
    logits = temperature * margins[best]
    probs = softmax(logits)
    thresholds = {m: float(np.quantile(abstain_score(probs, sims, m), 1 - max_refused)) for m in ABSTAIN_METHODS}
    companion_logits = temperature * extra[best] if companions is not None else None
    return HeadSelection(
        best, temperature, thresholds, f1, 1.0 - sims.max(axis=1), probs, truth, logits, companion_logits
    )


@dataclass(frozen=True)
class HeldOut:
    """One held-out class's photos (and crops of some) scored by a head trained without it."""

    logits: np.ndarray
    probabilities: np.ndarray
    pool: int | None  # the pool's index among that head's classes
    crop_logits: np.ndarray
    crop_of: np.ndarray  # indices into this class's photos


def held_out_scores(
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    c: float,
    temperature: float,
    max_classes: int = 8,
    pool: str | None = None,
    companions: np.ndarray | None = None,
    companion_of: np.ndarray | None = None,
) -> list[HeldOut]:
    """Each of at most ``max_classes`` named classes (chosen evenly; never the ``pool``) held out in
    turn: its photos, and the ``companions`` of them, scored by a head trained on the other classes:
    stand-ins for the species the model was never taught."""
    named = [k for k in classes if k != pool]
    if len(named) < 3:
        return []
    held_out = named[:: max(1, -(-len(named) // max_classes))]
    z = l2_normalise(x)
    of = companion_of if companion_of is not None else np.zeros(0, dtype=np.int64)
    models = fit(z, y, [Problem(c, y != held, [k for k in classes if k != held]) for held in held_out])
    out = []
    for held, model in zip(held_out, models, strict=True):
        head = _head(model, z, y, y != held, c, temperature)
        members = np.flatnonzero(y == held)
        rows = x[members]
        mine = np.isin(of, members)
        local = np.searchsorted(members, of[mine])
        crops = (
            head.logits(companions[mine])
            if companions is not None and mine.any()
            else np.zeros((0, len(model.classes)))
        )
        out.append(HeldOut(head.logits(rows), head.scores(rows)[0], pool_index(model.classes, pool), crops, local))
    return out


def held_out_tops(
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    c: float,
    temperature: float,
    max_classes: int = 8,
    pool: str | None = None,
    score: str = TOP_PROBABILITY,
    scored: list[HeldOut] | None = None,
) -> np.ndarray:
    """The sure scores (``score``: top named probability, or the margin between the two best named
    logits) that the photos of held-out classes get (``held_out_scores``, or those already ``scored``)."""
    groups = scored if scored is not None else held_out_scores(x, y, classes, c, temperature, max_classes, pool)
    if not groups:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(
        [sure_values(g.probabilities, g.logits if score == MARGIN else None, g.pool, score) for g in groups]
    )


def observation_fits(
    selection: HeadSelection,
    held: list[HeldOut],
    crop_of: np.ndarray,
    pool: int | None,
    max_refused: float,
    precision: float,
    seed: int,
) -> dict[str, CountFit]:
    """Observation thresholds (bunga.models.observation.fit_counts) from a head selection whose
    companions are crops of the training rows ``crop_of``, and the held-out-class stand-ins."""
    companion = selection.companion_logits if selection.companion_logits is not None else np.zeros((0, 1))
    known = Scores(
        log_probabilities(selection.probs, selection.logits),
        selection.truth,
        log_probabilities(companion, companion),
        crop_of,
        pool,
    )
    untaught = [
        Scores(
            log_probabilities(h.probabilities, h.logits),
            np.zeros(len(h.logits), dtype=np.int64),
            log_probabilities(h.crop_logits, h.crop_logits),
            h.crop_of,
            h.pool,
        )
        for h in held
    ]
    return fit_counts(known, untaught, max_refused, precision, seed)


def open_set(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: list[str],
    c: float,
    temperature: float,
    max_refused: float,
    max_classes: int = 8,
) -> dict[str, dict[str, float]]:
    """Hold each class out in turn (at most ``max_classes``, chosen evenly): train on the others,
    score their test photos (known) against every photo of the held-out class (unknown). Mean AUROC
    and share of unknowns refused at the threshold that keeps ``1 - max_refused`` of the known test
    photos. (A threshold from the training photos' own, in-sample scores kept only about 82 % of
    known photos on tf_flowers, and so reported 56 % refused where 18 % is the figure at 95 % kept.)"""
    named = [k for k in classes if k != OTHER_FLOWERS]  # the pool is never an "untaught species"
    held_out = named[:: max(1, -(-len(named) // max_classes))]
    results: dict[str, dict[str, list[float]]] = {m: {"auroc": [], "refused": []} for m in ABSTAIN_METHODS}
    z_train = l2_normalise(x_train)
    problems = [Problem(c, y_train != held, [k for k in classes if k != held]) for held in held_out]
    models = fit(z_train, y_train, problems)
    for held, model in zip(held_out, models, strict=True):
        keep_train, keep_test = y_train != held, y_test != held
        head = _head(model, z_train, y_train, keep_train, c, temperature)
        pk, sk = head.scores(x_test[keep_test])
        pu, su = head.scores(np.concatenate([x_train[~keep_train], x_test[~keep_test]]))
        for method in ABSTAIN_METHODS:
            s_known, s_unknown = abstain_score(pk, sk, method), abstain_score(pu, su, method)
            threshold = np.quantile(s_known, 1 - max_refused) if len(s_known) else np.inf
            results[method]["auroc"].append(auroc(s_known, s_unknown))
            results[method]["refused"].append(float((s_unknown > threshold).mean()))
    return {m: {k: float(np.nanmean(v)) for k, v in r.items()} for m, r in results.items()}


def compose_graph(backbone: Path, head: PhotoHead) -> bytes:
    """Backbone (ONNX, exported and checked against torch once) + L2 normalisation + linear head +
    softmax + centroid similarities, as one ONNX graph that also passes on the backbone's ImageNet
    probabilities (for "not a flower") and the photo's monitoring signature. No torch needed to build it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(backbone))
    graph = model.graph
    n = len(head.classes)
    graph.initializer.extend(
        [
            numpy_helper.from_array(head.coef.T.astype(np.float32), "head_w"),
            numpy_helper.from_array(head.intercept.astype(np.float32), "head_b"),
            numpy_helper.from_array(head.centroids.T.astype(np.float32), "head_centroids"),
            numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "head_eps"),
            numpy_helper.from_array(projection(head.coef.shape[1]), "signature_projection"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("ReduceL2", ["embedding"], ["head_norm"], axes=[1], keepdims=1),
            helper.make_node("Max", ["head_norm", "head_eps"], ["head_norm_safe"]),
            helper.make_node("Div", ["embedding", "head_norm_safe"], ["head_z"]),
            helper.make_node("MatMul", ["head_z", "head_w"], ["head_logits_raw"]),
            helper.make_node("Add", ["head_logits_raw", "head_b"], [LOGITS_OUTPUT]),
            helper.make_node("Softmax", [LOGITS_OUTPUT], ["probabilities"], axis=1),
            helper.make_node("MatMul", ["head_z", "head_centroids"], ["similarity"]),
            helper.make_node("MatMul", ["head_z", "signature_projection"], [SIGNATURE_OUTPUT]),
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n]),
            helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT, ["batch", n]),
            helper.make_tensor_value_info("similarity", TensorProto.FLOAT, ["batch", n]),
            helper.make_tensor_value_info(IMAGENET_OUTPUT, TensorProto.FLOAT, ["batch", IMAGENET_CLASSES]),
            helper.make_tensor_value_info(SIGNATURE_OUTPUT, TensorProto.FLOAT, ["batch", SIGNATURE_DIM]),
        ]
    )
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def check_graph(graph: bytes, runner: BackboneRunner, head: PhotoHead, check_x: np.ndarray) -> float:
    """Largest difference between the composed graph and backbone + head computed separately."""
    got = onnx_session(graph).run(["probabilities", "similarity", SIGNATURE_OUTPUT], {"input": check_x})
    embeddings = runner.embed(check_x)
    expected = (*head.scores(embeddings), signatures(embeddings))
    return max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
