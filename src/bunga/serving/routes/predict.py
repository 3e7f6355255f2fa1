"""Prediction endpoints: measurements (JSON) and photos (multipart)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.routing import Match, Route
from starlette.types import Scope

from bunga.catalog import Catalog
from bunga.config import Settings
from bunga.files import sha256_bytes
from bunga.models.bands import logged_label, named_order
from bunga.monitor.log import PredictionLog, Record
from bunga.predict import PhotoAnswer, PhotoScores
from bunga.schemas import Measurements
from bunga.serving.batching import PhotoBatcher
from bunga.serving.limits import check_rate
from bunga.serving.metrics import Metrics
from bunga.serving.photos import Upload, decode_uploads, multipart_openapi, read_form
from bunga.serving.references import reference_info
from bunga.serving.schemas import Candidate, PhotoPrediction, PhotoResponse, PredictRequest, PredictResponse
from bunga.serving.store import ModelStore, Slot

router = APIRouter(tags=["predict"])
_COMPACT = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps with options builds one per call

MULTIPART_PHOTOS = multipart_openapi(
    {
        "file": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "format": "binary"},
            "description": "One or more photos (JPEG, PNG or WebP); repeat the field",
        },
    }
)


def shared_family(catalog: Catalog, species: list[str]) -> str | None:
    """The catalogue family every candidate belongs to, when they share one (and it is known)."""
    families = {catalog.get(s).famili for s in species}
    (family,) = families if len(families) == 1 else (None,)
    return family if family and family != "-" else None


def photo_slot(store: ModelStore) -> Slot:
    """The slot answering photos now (503 with what to do when none is loaded)."""
    return _slot(store, "photos")


def _slot(store: ModelStore, kind: str) -> Slot:
    slot = store.pick(kind)
    if slot is None:
        reason = store.errors.get(kind) or f"no {kind} model is loaded"
        raise HTTPException(503, f"{reason}; train one with `bunga pipeline`, then reload")
    return slot


# The body is documented here and parsed by the endpoint itself (pydantic's JSON parser in one pass):
# FastAPI's generic body handling (content-type parsing, json.loads, dependency solving) cost a
# third of a request's time on this hot path.
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
    }
}


def _json_type(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON (application/json or application/*+json; no header: JSON)."""
    if content_type is None:
        return True
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def parse_measurements(body: bytes, content_type: str | None) -> list[Measurements]:
    """The records of a /predict body, or RequestValidationError (422) with the fields at fault."""
    if not _json_type(content_type):
        raise HTTPException(422, "send the measurements as JSON with Content-Type: application/json")
    try:
        root = PredictRequest.model_validate_json(body).root
    except ValidationError as err:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in err.errors(include_url=False)]
        ) from None
    return root if isinstance(root, list) else [root]


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Species from measurements (cm)",
    openapi_extra=PREDICT_BODY,
)
async def predict(request: Request) -> Response:
    """Species and the probability of every class for one record or a batch (a ``PredictRequest``)."""
    started = time.perf_counter()
    state = request.app.state
    if state.predict_buckets is not None:
        check_rate(request, state.predict_buckets, "rate_predict")
    records = parse_measurements(await request.body(), request.headers.get("content-type"))
    settings: Settings = state.settings
    if len(records) > settings.max_batch:
        raise HTTPException(413, f"batch of {len(records)} records is over the limit of {settings.max_batch}")
    slot = _slot(state.store, "measurements")
    rows = [r.as_row() for r in records]  # as sent: float32 would move logged values across bin edges
    probs = slot.predictor.predict_proba(np.array(rows, dtype=np.float32))
    classes, name, version = slot.predictor.classes, slot.card.name, slot.version
    metrics: Metrics = state.metrics
    logger: PredictionLog | None = state.prediction_log
    arm = slot.card.alias or "champion"
    out = []
    now, latency_ms = time.time(), (time.perf_counter() - started) * 1000
    for row, f in zip(probs.tolist(), rows, strict=True):
        top = max(range(len(row)), key=row.__getitem__)
        best = classes[top]
        metrics.predicted("measurements", best, version)
        probabilities = {c: round(p, 6) for c, p in zip(classes, row, strict=True)}
        out.append({"species": best, "probabilities": probabilities, "model_name": name, "model_version": version})
        if logger is not None:
            logger.add(
                Record(
                    now,
                    "measurements",
                    name,
                    version,
                    arm,
                    best,
                    row[top],
                    True,
                    None,
                    latency_ms,
                    f[0],
                    f[1],
                    f[2],
                    f[3],
                )
            )
    # The hot path serialises plain dicts once (the documented shape is PredictResponse); FastAPI
    # would otherwise validate and serialise the response model a second time.
    return Response(_COMPACT.encode({"predictions": out}), media_type="application/json")


class DirectRoute(Route):
    """A plain Starlette route that names itself in the scope (the guard labels metrics by
    ``scope["route"]``, which FastAPI's router sets for its own routes only)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


# FastAPI documents `/predict` (the APIRoute above: OpenAPI, the fuzz test) and this plain route,
# matched first, serves it: the endpoint takes only the Request, so FastAPI's per-request dependency
# solving and wrapping would only cost (about a quarter of the request's time in process).
# Errors still reach the app's handlers (HTTPException, RequestValidationError) and the guard.
SERVED_DIRECTLY = [DirectRoute("/predict", predict, methods=["POST"])]


@router.post(
    "/predict/image",
    response_model=PhotoResponse,
    summary="Species from photos",
    openapi_extra=MULTIPART_PHOTOS,
    responses={413: {"description": "Too large"}, 415: {"description": "Not a JPEG, PNG or WebP"}},
)
async def predict_image(
    request: Request,
    k: Annotated[int, Query(ge=1, le=20, description="How many candidate species to list")] = 3,
) -> PhotoResponse:
    """Top-k species with probabilities and species information; ``recognised: false`` when the
    photo does not look like any species the model knows (the closest candidates are still listed)."""
    started = time.perf_counter()
    state = request.app.state
    check_rate(request, state.predict_buckets, "rate_predict")
    slot = _slot(state.store, "photos")
    uploads, scores = await score_uploads(request, slot, state.settings.max_files)
    return PhotoResponse(results=answer_photos(request, slot, scores, uploads, k, started))


async def score_uploads(request: Request, slot: Slot, max_files: int) -> tuple[list[Upload], PhotoScores]:
    """The request's photos (1 to ``max_files`` ``file`` parts), decoded and scored in a shared batch."""
    settings: Settings = request.app.state.settings
    batcher: PhotoBatcher = request.app.state.batcher
    with batcher.decoding():  # a batch forming now may wait (briefly) for this request's photos
        form = await read_form(request, max_files)
        try:
            uploads = await decode_uploads(
                form, settings.serve_max_pixels, settings.max_upload_bytes, slot.predictor.input_size
            )
        finally:
            await form.close()
        batch = np.stack([u.tensor for u in uploads]).astype(np.float32)
    return uploads, await batcher.score(slot.predictor, batch)


def photo_prediction(index: int, answer: PhotoAnswer, slot: Slot, catalog: Catalog) -> PhotoPrediction:
    """The answer for one photo (or one observation) with the catalogue's words and reference photos."""
    top = [
        Candidate(
            species=species,
            probability=round(probability, 6),
            info=catalog.get(species),
            reference=reference_info(slot, species),
        )
        for species, probability in answer.top
    ]
    return PhotoPrediction(
        index=index,
        recognised=answer.recognised,
        outcome=answer.outcome,
        species=answer.species,
        top=top,
        band=answer.band,
        candidates=answer.candidates,
        family=shared_family(catalog, answer.candidates),
        abstain_score=round(answer.abstain_score, 6),
        not_flower_score=round(answer.not_flower_score, 6),
        model_name=slot.card.name,
        model_version=slot.version,
    )


def answer_photos(
    request: Request,
    slot: Slot,
    scores: PhotoScores,
    uploads: list[Upload],
    k: int,
    started: float,
    observation: tuple[str, list[str]] | None = None,
) -> list[PhotoPrediction]:
    """Each photo's own answer, counted in the metrics and logged (with the ``observation`` id and
    its photos' sha256s, hashed once by the caller, when the photos were sent as one plant)."""
    state = request.app.state
    catalog: Catalog = state.catalog
    metrics: Metrics = state.metrics
    logger: PredictionLog | None = state.prediction_log
    arm = slot.card.alias or "champion"
    now, latency_ms = time.time(), (time.perf_counter() - started) * 1000
    results = []
    for index, (answer, upload) in enumerate(zip(slot.predictor.answers(scores, k), uploads, strict=True)):
        result = photo_prediction(index, answer, slot, catalog)
        metrics.photo_answers.labels(answer.band, arm).inc()
        label = logged_label(answer.band, answer.top[0][0], answer.pool_won)
        metrics.predicted("photos", label, slot.version)
        if not answer.recognised:
            metrics.unrecognised.inc()
        if logger is not None:
            signature = scores.signatures[index].astype(np.float16).tobytes() if scores.signatures is not None else None
            row = scores.probabilities[index]
            logger.add(
                Record(
                    now,
                    "photos",
                    slot.card.name,
                    slot.version,
                    arm,
                    label,
                    float(row[named_order(row, slot.predictor.pool)[0]]),
                    answer.recognised,
                    answer.abstain_score,
                    latency_ms,
                    photo_sha256=observation[1][index] if observation else sha256_bytes(upload.data),
                    signature=signature,
                    band=answer.band,
                    observation_id=observation[0] if observation else None,
                    observation_photos=len(observation[1]) if observation else None,
                )
            )
        results.append(result)
    return results
