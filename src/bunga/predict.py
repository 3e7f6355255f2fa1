"""Predictors: load an exported bundle once, predict batches. onnxruntime and numpy only (no training
code, no torch, no scikit-learn, no pickle)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bunga.bundle import read_bundle
from bunga.errors import BungaError
from bunga.imaging import INPUT_SIZE
from bunga.models.bands import (
    LOGITS_OUTPUT,
    MARGIN,
    NOT_A_FLOWER,
    NOT_RECOGNISED,
    POSSIBLE,
    SURE,
    TOP_PROBABILITY,
    band,
    candidates,
    named_order,
    sure_values,
)
from bunga.models.not_flower import IMAGENET_OUTPUT, NotFlowerRule, refusal_score
from bunga.models.observation import combine, count_key, log_probabilities
from bunga.models.signature import SIGNATURE_OUTPUT
from bunga.schemas import OTHER_FLOWERS, ModelCard


def serving_session(path: Path, threads: int | None) -> Any:
    """An onnxruntime session opened as serving opens every model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Idle ORT threads must not spin: they would steal the CPU the event loop needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class PhotoScores:
    """Probabilities per class, whether each photo is recognised as a known species, and whether it
    looks like a flower at all."""

    probabilities: np.ndarray
    recognised: np.ndarray
    abstain_scores: np.ndarray
    not_flower: np.ndarray
    not_flower_scores: np.ndarray
    signatures: np.ndarray | None = None  # monitoring signatures (graphs made before them have none)
    logits: np.ndarray | None = None  # the head's logits (graphs made before the margin score have none)


@dataclass(frozen=True)
class PhotoAnswer:
    """What bunga answers for one photo (or one observation), before the catalogue's words are added:
    the fields of a ``/predict/image`` result that come from the model."""

    band: str  # sure | possible | not_recognised | not_a_flower
    recognised: bool
    outcome: str  # species | unknown_species | not_a_flower
    species: str | None  # the top named species when recognised
    top: list[tuple[str, float]]  # the k most probable named species (the pool never) and their probabilities
    candidates: list[str]  # possible: up to three species it may be, most likely first
    abstain_score: float
    not_flower_score: float
    pool_won: bool  # the other_flowers pool was the most probable class


@dataclass(frozen=True)
class ObservationAnswer:
    """The combined answer for the photos of one plant."""

    probabilities: np.ndarray  # (classes,)
    recognised: bool
    abstain_score: float
    not_flower_score: float
    band: str
    used: list[int]  # the photos combined (those judged a flower); empty: none was

    @property
    def not_a_flower(self) -> bool:
        """True when every photo was judged not a flower."""
        return self.band == NOT_A_FLOWER


def _row(scores: PhotoScores, i: int) -> PhotoScores:
    """One photo's scores as a batch of one."""
    pick = slice(i, i + 1)
    return PhotoScores(
        scores.probabilities[pick],
        scores.recognised[pick],
        scores.abstain_scores[pick],
        scores.not_flower[pick],
        scores.not_flower_scores[pick],
        None if scores.signatures is None else scores.signatures[pick],
        None if scores.logits is None else scores.logits[pick],
    )


class Predictor:
    """A loaded model bundle of either kind."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        self.card, model_path = read_bundle(folder)
        self.model_path = model_path  # the graph's file (its sha256 is the card's onnx_sha256)
        try:
            self.session = serving_session(model_path, threads)
        except Exception as err:  # onnxruntime raises its own exception types
            raise BungaError(f"{model_path} cannot be loaded by onnxruntime: {type(err).__name__}") from err
        self.classes = list(self.card.classes)
        # the other_flowers pool's index: a class the model learned so that it can say "none of mine"
        self.pool = self.classes.index(OTHER_FLOWERS) if OTHER_FLOWERS in self.classes else None
        self._outputs = [o.name for o in self.session.get_outputs()]
        nf = self.card.not_flower
        self._not_flower = None
        if nf is not None:
            references = nf.imagenet_reference, nf.centroid_reference
            self._not_flower = NotFlowerRule(nf.imagenet_classes, nf.threshold, *references)

    @property
    def kind(self) -> str:
        """'measurements' or 'photos'."""
        return self.card.kind

    @property
    def input_size(self) -> int:
        """Side in pixels of the square photos the graph takes (224 for bundles that predate the setting)."""
        return self.card.input_size or INPUT_SIZE

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch (measurements (N, 4) or photos (N, 3, 224, 224))."""
        return np.asarray(self.session.run(["probabilities"], {"input": x.astype(np.float32, copy=False)})[0])

    def predict(self, x: np.ndarray) -> list[str]:
        """The most likely class of each row."""
        return [self.classes[i] for i in self.predict_proba(x).argmax(axis=1)]

    def score_photos(self, x: np.ndarray) -> PhotoScores:
        """Probabilities plus the abstention decision for preprocessed photos."""
        rule = self._not_flower
        with_signature = SIGNATURE_OUTPUT in self._outputs
        with_logits = LOGITS_OUTPUT in self._outputs
        outputs = ["probabilities", "similarity", *([SIGNATURE_OUTPUT] if with_signature else [])]
        outputs += [LOGITS_OUTPUT] if with_logits else []
        outputs += [IMAGENET_OUTPUT] if rule is not None else []
        found = dict(zip(outputs, self.session.run(outputs, {"input": x}), strict=True))
        probs, sims = found["probabilities"], found["similarity"]
        signatures, logits = found.get(SIGNATURE_OUTPUT), found.get(LOGITS_OUTPUT)
        imagenet = [found[IMAGENET_OUTPUT]] if rule is not None else []
        if rule is not None:  # outside the garden's ImageNet classes, and far from every species centroid
            flower_scores = refusal_score(imagenet[0], 1.0 - sims.max(axis=1), rule)
            not_flower = flower_scores > rule.threshold
        else:
            flower_scores, not_flower = np.zeros(len(probs), dtype=np.float32), np.zeros(len(probs), dtype=bool)
        abstention = self.card.abstention
        if abstention is None:
            scores = np.zeros(len(probs), dtype=np.float32)
            return PhotoScores(probs, ~not_flower, scores, not_flower, flower_scores, signatures, logits)
        best = probs.max(axis=1) if abstention.method == "max_prob" else sims.max(axis=1)
        scores = 1.0 - best
        recognised = (scores <= abstention.threshold) & ~not_flower
        if self.pool is not None:  # the other_flowers pool won: a flower the model must never name
            recognised &= probs.argmax(axis=1) != self.pool
        return PhotoScores(probs, recognised, scores, not_flower, flower_scores, signatures, logits)

    def sure_values(self, scores: PhotoScores) -> np.ndarray:
        """Each photo's value for the sure threshold, by the score the card names (its top named
        probability for cards made before the margin)."""
        score = self.card.bands.score if self.card.bands is not None else TOP_PROBABILITY
        return sure_values(scores.probabilities, scores.logits, self.pool, score)

    def bands(self, scores: PhotoScores) -> list[str]:
        """Each photo's answer band (sure, possible, not_recognised, not_a_flower) by the card's sure
        threshold, as every answer of this model is banded (the server's, and the one a feedback stores)."""
        threshold = self.card.bands.sure_threshold if self.card.bands is not None else None
        values = self.sure_values(scores)
        return [
            band(bool(known), bool(not_flower), float(value), threshold)
            for known, not_flower, value in zip(scores.recognised, scores.not_flower, values, strict=True)
        ]

    def observe(self, scores: PhotoScores) -> ObservationAnswer:
        """One answer for several photos of one plant: the photos judged not a flower are left out;
        one photo left answers exactly as alone; two or more are combined (mean log-probabilities,
        bunga.models.observation) and judged by the card's thresholds for that many photos (a card
        without them answers a combination at most ``possible``)."""
        used = [int(i) for i in np.flatnonzero(~np.asarray(scores.not_flower, dtype=bool))]
        if len(used) <= 1:
            only = used[0] if used else 0
            (answer_band,) = self.bands(_row(scores, only))
            return ObservationAnswer(
                np.asarray(scores.probabilities[only], dtype=np.float64),
                bool(scores.recognised[only]),
                float(scores.abstain_scores[only]),
                float(scores.not_flower_scores[only]),
                answer_band,
                used,
            )
        rows = np.asarray(used)
        logits = scores.logits[rows] if scores.logits is not None else None
        probs, mean = combine(log_probabilities(scores.probabilities[rows], logits))
        abstain = 1.0 - float(probs.max())
        fit = self.card.observation.get(count_key(len(used)))
        pool_won = self.pool is not None and int(probs.argmax()) == self.pool
        if fit is not None:
            known = abstain <= fit.abstain_threshold and not pool_won
        else:  # no thresholds for combinations: recognised when most of the photos are
            known = not pool_won and 2 * int(np.asarray(scores.recognised)[rows].sum()) >= len(used)
        answer_band = POSSIBLE if known else NOT_RECOGNISED
        if known and fit is not None:
            value = float(sure_values(probs[None], mean[None], self.pool, MARGIN)[0])
            answer_band = SURE if value >= fit.sure_threshold else POSSIBLE
        flower_score = float(np.mean(np.asarray(scores.not_flower_scores)[rows]))
        return ObservationAnswer(probs, known, abstain, flower_score, answer_band, used)

    def answer(
        self,
        probabilities: np.ndarray,
        known: bool,
        not_flower: bool,
        answer_band: str,
        scores: tuple[float, float],
        k: int = 3,
    ) -> PhotoAnswer:
        """One answer from a row of class probabilities, its band and its (abstain, not-a-flower) scores."""
        order = named_order(probabilities, self.pool)[:k]
        top = [(self.classes[i], float(probabilities[i])) for i in order]
        possible = [self.classes[i] for i in candidates(probabilities, self.pool)] if answer_band == POSSIBLE else []
        return PhotoAnswer(
            band=answer_band,
            recognised=known,
            outcome="species" if known else "not_a_flower" if not_flower else "unknown_species",
            species=top[0][0] if known else None,
            top=top,
            candidates=possible,
            abstain_score=scores[0],
            not_flower_score=scores[1],
            pool_won=self.pool is not None and int(np.argmax(probabilities)) == self.pool,
        )

    def answers(self, scores: PhotoScores, k: int = 3) -> list[PhotoAnswer]:
        """Each photo's answer, as the server gives it."""
        return [
            self.answer(
                scores.probabilities[i],
                bool(scores.recognised[i]),
                bool(scores.not_flower[i]),
                answer_band,
                (float(scores.abstain_scores[i]), float(scores.not_flower_scores[i])),
                k,
            )
            for i, answer_band in enumerate(self.bands(scores))
        ]

    def observation_answer(self, scores: PhotoScores, k: int = 3) -> tuple[PhotoAnswer, ObservationAnswer]:
        """The one answer for several photos of one plant (``observe``), and how it was combined."""
        combined = self.observe(scores)
        numbers = (combined.abstain_score, combined.not_flower_score)
        answer = self.answer(
            combined.probabilities, combined.recognised, combined.not_a_flower, combined.band, numbers, k
        )
        return answer, combined

    def describe(self) -> ModelCard:
        """The card of the loaded model."""
        return self.card
