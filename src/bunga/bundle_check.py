"""What a bundle must answer before it serves: its graph run the way requests run it, on reference
inputs, with every output the kind's answers use checked; and, where the card recorded them at
training, the same probabilities for the same inputs (a graph that ignores its input, or is not the
one trained, answers them differently).

numpy, Pillow and onnxruntime only: serving and training both import this module.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from bunga.bundle import write_card
from bunga.errors import BungaError
from bunga.imaging import INPUT_SIZE, ImageRejected, photo_tensor
from bunga.models.not_flower import IMAGENET_OUTPUT
from bunga.models.signature import SIGNATURE_DIM, SIGNATURE_OUTPUT
from bunga.predict import Predictor
from bunga.schemas import ModelCard, RecordedAnswers

IMAGENET_CLASSES = 1000  # the photo graph's ImageNet output (bunga.models.backbone, which serving does not import)
DISTRIBUTION_TOLERANCE = 1e-4  # probabilities sum to 1 within this, each in [0, 1] within it
ANSWER_TOLERANCE = 1e-3  # recorded and recomputed probabilities agree within this (threads, builds)
# Measurements a graph is tried on when its card recorded none (one typical flower of each Iris species).
DEFAULT_ROWS = [[5.1, 3.5, 1.4, 0.2], [5.9, 3.0, 4.2, 1.5], [6.3, 3.3, 6.0, 2.5]]
REFERENCE_PHOTO_PIXELS = 1_000_000  # reference photos are 160 px thumbnails; this only bounds a forged card
NO_ANSWERS = (
    "its card has no recorded answers (made before bunga recorded them): its structure was checked, not its answers"
)


def _reference_photos(card: ModelCard) -> tuple[list[str], np.ndarray]:
    """The species whose reference photo decodes, and the photos as the request path preprocesses them."""
    names, tensors, size = [], [], card.input_size or INPUT_SIZE
    for name in sorted(card.references):
        try:
            data = base64.b64decode(card.references[name].jpeg_base64, validate=True)
            tensors.append(photo_tensor(data, REFERENCE_PHOTO_PIXELS, size=size))
        except (ValueError, ImageRejected):  # binascii.Error is a ValueError
            continue
        names.append(name)
    shape = (0, 3, size, size)
    return names, np.stack(tensors) if tensors else np.zeros(shape, dtype=np.float32)


def reference_inputs(card: ModelCard) -> tuple[np.ndarray, RecordedAnswers | None]:
    """The inputs a bundle is checked on, and the answers recorded for them (None: none recorded)."""
    recorded = card.answers
    if card.kind == "measurements":
        if recorded is None or not recorded.inputs:
            return np.array(DEFAULT_ROWS, dtype=np.float32), None
        return np.array(recorded.inputs, dtype=np.float32), recorded
    if recorded is not None and recorded.photos:
        by_name = dict(zip(*_reference_photos(card), strict=True))
        missing = [name for name in recorded.photos if name not in by_name]
        if missing:
            raise BungaError(f"the card records answers for reference photos it does not hold: {missing[:3]}")
        return np.stack([by_name[name] for name in recorded.photos]), recorded
    _, photos = _reference_photos(card)
    if len(photos) == 0:  # a card without reference photos: generated input still exercises every output
        size = card.input_size or INPUT_SIZE
        photos = np.random.default_rng(0).normal(0, 0.5, (2, 3, size, size)).astype(np.float32)
    return photos, None


def answer_rows(x: np.ndarray, y: np.ndarray, per_class: int = 2) -> np.ndarray:
    """Reference measurements to record answers for: the first ``per_class`` rows of each class
    (the test split's, so they differ from one another); the defaults when there are none."""
    picked = [i for label in sorted(set(y.tolist())) for i in np.flatnonzero(y == label)[:per_class]]
    return np.asarray(x[picked] if picked else DEFAULT_ROWS, dtype=np.float32)


def record_answers(predictor: Predictor, rows: np.ndarray | None = None) -> RecordedAnswers:
    """The answers to record in a new card: ``rows`` (measurements) or the card's reference photos."""
    if predictor.kind == "measurements":
        if rows is None or len(rows) == 0:
            raise BungaError("a measurement model's recorded answers need reference rows")
        x = np.asarray(rows, dtype=np.float32)
        probs = predictor.predict_proba(x)
        return RecordedAnswers(inputs=x.tolist(), probabilities=probs.tolist())
    names, photos = _reference_photos(predictor.card)
    if not names:
        raise BungaError("a photo model's recorded answers need its reference photos")
    probs = predictor.score_photos(photos).probabilities
    return RecordedAnswers(photos=names, probabilities=np.asarray(probs).tolist())


def _distribution(probs: np.ndarray, classes: int, what: str) -> None:
    if probs.ndim != 2 or probs.shape[1] != classes:
        raise BungaError(f"{what} has shape {probs.shape}, not probabilities over {classes} classes")
    if not np.isfinite(probs).all():
        raise BungaError(f"{what} holds NaN or infinite values")
    low, high = float(probs.min()), float(probs.max())
    if low < -DISTRIBUTION_TOLERANCE or high > 1 + DISTRIBUTION_TOLERANCE:
        raise BungaError(f"{what} are not probabilities: values from {low:.4g} to {high:.4g}, outside [0, 1]")
    worst = float(np.abs(probs.sum(axis=1) - 1.0).max())
    if worst > DISTRIBUTION_TOLERANCE:
        raise BungaError(f"{what} are not probabilities: a row sums to 1 {worst:+.2e} away")


def _photo_outputs(predictor: Predictor, x: np.ndarray) -> None:
    """Every output photo answers use, present, of the right shape and finite."""
    n, classes = len(x), len(predictor.classes)
    expected = {"probabilities": classes, "similarity": classes}
    if predictor.card.not_flower is not None:
        expected[IMAGENET_OUTPUT] = IMAGENET_CLASSES
    names = [o.name for o in predictor.session.get_outputs()]
    if SIGNATURE_OUTPUT in names:  # graphs made before signatures have none; serving copes
        expected[SIGNATURE_OUTPUT] = SIGNATURE_DIM
    missing = sorted(set(expected) - set(names))
    if missing:
        raise BungaError(f"the photo graph lacks the output(s) {missing} that photo answers use")
    found = predictor.session.run(list(expected), {"input": x})
    for (name, width), value in zip(expected.items(), found, strict=True):
        value = np.asarray(value)
        if value.shape != (n, width):
            raise BungaError(f"the photo graph's output {name!r} has shape {value.shape}, expected {(n, width)}")
        if not np.isfinite(value).all():
            raise BungaError(f"the photo graph's output {name!r} holds NaN or infinite values")
    if IMAGENET_OUTPUT in expected:  # the not-a-flower rule reads it as probabilities
        _distribution(np.asarray(found[list(expected).index(IMAGENET_OUTPUT)]), IMAGENET_CLASSES, "its ImageNet output")


def verify(predictor: Predictor) -> list[str]:
    """Run the bundle the way requests do and check what it answers; raise BungaError (saying why)
    when it must not serve. Returns warnings for a bundle that may serve but is checked less."""
    try:
        x, recorded = reference_inputs(predictor.card)
        if predictor.kind == "photos":
            _photo_outputs(predictor, x)
            probs = np.asarray(predictor.score_photos(x).probabilities)  # exactly what a request calls
        else:
            probs = predictor.predict_proba(x)
    except BungaError:
        raise
    except Exception as err:  # onnxruntime raises its own types for a graph that cannot run this input
        raise BungaError(f"the check prediction failed: {type(err).__name__}: {str(err)[:200]}") from err
    _distribution(probs, len(predictor.classes), "its answers")
    if recorded is None:
        return [NO_ANSWERS]
    expected = np.asarray(recorded.probabilities, dtype=np.float64)
    if expected.shape != probs.shape:
        raise BungaError(f"the card records answers of shape {expected.shape}, the graph gives {probs.shape}")
    diff = float(np.abs(expected - probs).max())
    if diff > ANSWER_TOLERANCE:
        raise BungaError(
            f"its answers to the reference inputs differ from those recorded at training by {diff:.3g} "
            f"(tolerance {ANSWER_TOLERANCE:g}): the graph is not the model that was trained"
        )
    return []


def record_and_verify(folder: Path, rows: np.ndarray | None = None) -> Predictor:
    """At training: record a new bundle's answers to its reference inputs (``rows`` for measurements,
    the card's reference photos for photos) in its card, then check it exactly as serving will."""
    predictor = Predictor(folder)
    write_card(folder, predictor.card.model_copy(update={"answers": record_answers(predictor, rows)}))
    predictor = Predictor(folder)
    verify(predictor)
    return predictor
