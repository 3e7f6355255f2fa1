"""Typed records at every boundary: measurements, the merge manifest, evaluation and gate reports."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict

FEATURES: tuple[str, ...] = ("sepal_length", "sepal_width", "petal_length", "petal_width")

# Who decides: a curator's name, wherever it enters (the BUNGA_CURATORS token map, the review page,
# a Label Studio import). Record file names are built from it, so it holds no path separator, dot run
# or control character.
CURATOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CURATOR_RULE = "1-64 characters of A-Z, a-z, 0-9, '_' and '-', starting with a letter or digit"
# Words that are decisions or answers, never species: refused as a species id wherever one enters
# (catalogue edits, photo folders, labels, Label Studio choices). other_flowers is the pool of species
# the garden does not name (outlier exposure): a class the model learns and never answers.
NOT_A_FLOWER, REJECT, UNRECOGNISED, OTHER_FLOWERS = "not_a_flower", "reject", "unrecognised", "other_flowers"
RESERVED_IDS = frozenset({NOT_A_FLOWER, REJECT, UNRECOGNISED, "not_recognised", OTHER_FLOWERS})


_SEPARATORS = re.compile(r"[\s.\-/]+")


def normalise(text: str) -> str:
    """A header or species spelling as a name: lower-case, trimmed, words joined with underscores."""
    return _SEPARATORS.sub("_", text.strip().lower()).strip("_")


def curator_name(raw: str) -> str:
    """``raw`` when it is a valid curator name; ValueError saying the rule otherwise."""
    if not CURATOR_NAME.match(raw):
        raise ValueError(f"curator name {raw[:40]!r} is not valid: {CURATOR_RULE}")
    return raw


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


LENGTH_ABOVE, LENGTH_MAX = 0.0, 100.0  # a measurement in cm is above 0 and at most 100
Length = Annotated[
    float, Strict(), Field(gt=LENGTH_ABOVE, le=LENGTH_MAX, description="centimetres"), AfterValidator(_finite)
]


class Measurements(BaseModel):
    """The four measurements of one flower, in centimetres."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]
        },
    )

    sepal_length: Length
    sepal_width: Length
    petal_length: Length
    petal_width: Length

    def as_row(self) -> list[float]:
        """The values in the canonical feature order."""
        return [self.sepal_length, self.sepal_width, self.petal_length, self.petal_width]


FileKind = Literal["measurements", "photo", "labels", "catalog", "ignored", "rejected"]


class FileEntry(BaseModel):
    """One input file seen by the merge."""

    path: str
    sha256: str
    kind: FileKind


class Manifest(BaseModel):
    """What one merge read, kept and dropped, and the digest of the result."""

    dataset_digest: str
    measurements_digest: str
    photos_digest: str
    rows_read: int = 0
    rows_kept: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    rows_queued: int = 0  # visitors' labelled measurements waiting for a curator's decision
    rows_with_missing: int = 0
    blank_lines: int = 0
    images_read: int = 0
    images_kept: int = 0
    images_rejected: int = 0
    images_duplicate: int = 0
    images_queued: int = 0
    missing_policy: str = "reject"
    classes_measurements: list[str] = []
    classes_photos: dict[str, int] = {}
    # the catalogue of this version (species.yaml: the packaged one with curators' edits applied)
    catalog_digest: str = ""
    species_added: list[str] = []  # by curators, beyond the packaged catalogue
    files: list[FileEntry] = []

    def balanced(self) -> bool:
        """True when every row and every image read is accounted for."""
        rows_ok = self.rows_read == self.rows_kept + self.rows_rejected + self.rows_duplicate + self.rows_queued
        images_ok = self.images_read == (
            self.images_kept + self.images_rejected + self.images_duplicate + self.images_queued
        )
        return rows_ok and images_ok


class ClassMetrics(BaseModel):
    """Precision, recall and F1 of one class."""

    precision: float
    recall: float
    f1: float
    support: int


class EvaluationReport(BaseModel):
    """The metrics of one model on one labelled set."""

    kind: Literal["measurements", "photos"]
    n_samples: int
    accuracy: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    precision_weighted: float
    recall_weighted: float
    f1_weighted: float
    classes: list[str]
    per_class: dict[str, ClassMetrics]
    confusion_matrix: list[list[int]]
    model_version: str | None = None
    dataset_digest: str | None = None
    # photos with an other_flowers pool: the share of the named species' test photos whose answer was
    # the pool (refused as "not recognised"); the macro averages cover the named species only
    lost_to_pool: float | None = None


class GateDecision(BaseModel):
    """The verdict of the promotion gate, with every reason."""

    passed: bool
    reasons: list[str]
    candidate_f1: float
    champion_f1: float | None = None
    threshold: float
    tolerance: float


class Abstention(BaseModel):
    """How the photo model says 'not a species I know': a score and its calibrated threshold."""

    method: Literal["max_prob", "centroid"]
    threshold: float


class NotFlower(BaseModel):
    """How the photo model says 'this is not a flower': the ImageNet classes that count as
    flower-like, the training photos' held-out score quantiles (ImageNet probability outside those
    classes; distance to the nearest centroid) and the threshold on their joined score. Cards made
    before the distance have no references: their threshold is on the ImageNet score alone."""

    imagenet_classes: list[int]
    threshold: float
    imagenet_reference: list[float] = []
    centroid_reference: list[float] = []


class Bands(BaseModel):
    """When a recognised photo's answer is ``sure`` rather than ``possible`` (bunga.models.bands): the
    top-probability threshold fitted at training, and what it gave on the training split's hold-outs."""

    sure_threshold: float
    fitted_precision: float  # share of sure answers right (known photos mixed with held-out classes)
    fitted_known_sure: float  # share of known photos answered sure
    # what the threshold applies to: the top probability (cards made before the margin answer so), or
    # the margin between the two best named logits (bunga.models.bands: probabilities saturate)
    score: Literal["top_probability", "margin"] = "top_probability"


class ObservationBands(BaseModel):
    """Thresholds for an observation of several photos of one plant (bunga.models.observation), fitted
    at training for 2 photos (key "2") and for 3 to 5 (key "3"): the stricter of different photos of
    one class and a photo with a crop of itself."""

    abstain_threshold: float  # on 1 - the combined top probability: above it, not recognised
    sure_threshold: float  # on the combined margin between the two best named classes
    fitted_known_sure: float  # share of known combinations of different photos answered sure
    fitted_known_sure_same: float  # the same, a photo with a crop of itself


class ReferenceProfile(BaseModel):
    """What a model saw and said at training time (training split), for drift checks."""

    n: int
    class_priors: dict[str, float]
    top_prob_quantiles: list[float]
    top_prob_mean: float
    recognised_rate: float = 1.0
    feature_quantiles: dict[str, list[float]] = {}
    signature_sample: list[list[float]] = []  # photos: signatures of up to 200 training photos


class ReferencePhoto(BaseModel):
    """A small typical training photo of one species, shown beside the model's answer."""

    jpeg_base64: str
    licence: str = ""  # e.g. "CC BY 2.0"; empty when the photo came without a recorded licence
    link: str = ""  # where the photographer is credited


class RecordedAnswers(BaseModel):
    """The model's probabilities for a few reference inputs, recorded at training and checked at every
    load: a graph that ignores its input, or is not the one trained, answers them differently.
    Measurements: ``inputs`` are rows in ``FEATURES`` order. Photos: ``photos`` names the species whose
    reference photo in the card (its exact JPEG bytes) is the input."""

    inputs: list[list[float]] = []
    photos: list[str] = []
    probabilities: list[list[float]]


class ModelCard(BaseModel):
    """Everything serving needs to know about an exported model, stored beside ``model.onnx``."""

    kind: Literal["measurements", "photos"]
    name: str
    classes: list[str]
    onnx_sha256: str
    family: str
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    trained_at: str | None = None
    dataset_digest: str | None = None
    metrics: dict[str, float] = {}
    features: list[str] | None = None
    input_size: int | None = None
    backbone: str | None = None
    abstention: Abstention | None = None
    not_flower: NotFlower | None = None
    bands: Bands | None = None  # cards without them answer every recognised photo as sure
    # per photo count ("2", "3" for 3-5); cards without them answer a combination at most `possible`
    observation: dict[str, ObservationBands] = {}
    references: dict[str, ReferencePhoto] = {}
    profile: ReferenceProfile | None = None  # the reference for monitoring
    answers: RecordedAnswers | None = None  # cards made before them are checked for structure only
