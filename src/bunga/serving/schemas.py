"""Request and response models of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel

from bunga.catalog import SpeciesInfo
from bunga.schemas import Measurements


class FieldError(BaseModel):
    """One field that failed validation."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """Every error response: a sentence, or the list of fields that failed validation."""

    detail: str | list[FieldError]


class PredictRequest(RootModel[Measurements | Annotated[list[Measurements], Field(min_length=1)]]):
    """One record, or a non-empty array of records (lengths in centimetres)."""


class Prediction(BaseModel):
    """The answer for one measurement record."""

    species: str
    probabilities: dict[str, float]
    model_name: str
    model_version: str


class PredictResponse(BaseModel):
    """Predictions for a record or a batch, in request order."""

    predictions: list[Prediction]


class ReferenceInfo(BaseModel):
    """Where to get the model's reference photo of a species, and its credit."""

    url: str
    licence: str = Field(description="The photo's licence, e.g. CC BY 2.0; empty when none was recorded")
    link: str = Field(description="The photo's page, where its photographer is credited; may be empty")


class Candidate(BaseModel):
    """One of the top-k species for a photo."""

    species: str
    probability: float
    info: SpeciesInfo
    reference: ReferenceInfo | None = Field(None, description="A typical training photo of this species")


class PhotoPrediction(BaseModel):
    """The answer for one photo."""

    index: int
    recognised: bool
    outcome: Literal["species", "unknown_species", "not_a_flower"] = Field(
        description="A known species; a flower the model was not taught; or not a flower at all"
    )
    species: str | None = Field(description="The top species, or null when the photo is not recognised")
    top: list[Candidate] = Field(description="The closest species (suggestions only when not recognised)")
    band: Literal["sure", "possible", "not_recognised", "not_a_flower"] = Field(
        description="How sure the answer is: sure (the name), possible (candidates, a guess), not_recognised, "
        "not_a_flower"
    )
    candidates: list[str] = Field(
        [], description="possible: up to three species it may be (most likely first); empty otherwise"
    )
    family: str | None = Field(None, description="possible: the family every candidate belongs to, when they share one")
    abstain_score: float
    not_flower_score: float
    model_name: str
    model_version: str


class PhotoResponse(BaseModel):
    """Answers for the uploaded photos, in upload order."""

    results: list[PhotoPrediction]


class ObservationPrediction(PhotoPrediction):
    """One answer for several photos of one plant (the fields of one ``/predict/image`` result), each
    photo's own answer, and the server's id for the observation."""

    observation_id: str = Field(description="The server's id for these photos; cite it in /feedback")
    photo_count: int = Field(description="How many photos were sent")
    photos_used: int = Field(description="How many were combined (photos judged not a flower are left out)")
    photos: list[PhotoPrediction] = Field(description="Each photo's own answer, in upload order")


class MeasurementFeedback(Measurements):
    """A measurement record with the species the user says it is."""

    label: str = Field(min_length=1, max_length=100)
    predicted: str | None = Field(None, max_length=100)


class FeedbackResponse(BaseModel):
    """What was stored."""

    stored: bool
    kind: Literal["measurements", "photos"]
    id: str
    label: str | None
    ids: list[str] = Field([], description="Photos: every photo stored (several when citing an observation)")
    observation_id: str | None = Field(None, description="Photos: the observation the photos were stored under")


class ModelInfo(BaseModel):
    """The model serving one data kind."""

    kind: str
    name: str
    version: str | None
    alias: str | None
    run_id: str | None
    trained_at: str | None
    metrics: dict[str, float]
    classes: list[str]
    dataset_digest: str | None
    family: str
    challenger_version: str | None = None
    stale: bool = False
    stale_since: str | None = Field(None, description="The registry has been unreachable since then")
    warnings: list[str] = Field([], description="Why this bundle was checked less than a current one at load")


class InboxUsage(BaseModel):
    """What the feedback inbox holds against its quota."""

    bytes: int
    files: int
    max_bytes: int
    max_files: int


class ModelsResponse(BaseModel):
    """Every loaded model and the canary share."""

    models: dict[str, ModelInfo]
    challenger_percent: float
    errors: dict[str, str]
    inbox: InboxUsage | None = None


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    models: dict[str, str] = {}
    stale: dict[str, str] = Field({}, description="Kinds served from local disk while the registry is down: since when")
    errors: dict[str, str] = Field(
        {}, description="Kinds whose last load or reload failed, and why (an older version may still serve them)"
    )


class TrafficRequest(BaseModel):
    """Share of requests sent to the challenger."""

    challenger_percent: float = Field(ge=0, le=100)


class ReloadResult(BaseModel):
    """What one reload did for one kind."""

    kind: str
    status: Literal["swapped", "unchanged", "failed", "absent"]
    old_version: str | None = None
    new_version: str | None = None
    error: str | None = None


class ReloadResponse(BaseModel):
    """Results of a reload."""

    results: list[ReloadResult]
