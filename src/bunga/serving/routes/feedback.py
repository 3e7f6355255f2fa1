"""Visitor feedback: a confirmed or corrected label becomes new raw data for `bunga merge`."""

from __future__ import annotations

import errno
import hashlib
import re
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Header, HTTPException, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from bunga.config import Settings
from bunga.files import sha256_bytes
from bunga.garden.inbox import Inbox, InboxConflict, InboxFull, InboxUnavailable
from bunga.garden.records import voter
from bunga.imaging import INPUT_SIZE
from bunga.models.bands import BANDS
from bunga.models.observation import MAX_PHOTOS
from bunga.schemas import NOT_A_FLOWER
from bunga.serving.deps import inbox_unavailable, known_species
from bunga.serving.limits import check_rate
from bunga.serving.observations import ObservationBook
from bunga.serving.photos import Upload, decode_uploads, multipart_openapi, read_form
from bunga.serving.schemas import FeedbackResponse, MeasurementFeedback
from bunga.serving.store import Slot

router = APIRouter(tags=["feedback"])
_KEY = re.compile(r"^[A-Za-z0-9_\-]{8,100}$")
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,99}$")

FEEDBACK_BODY = multipart_openapi(
    {
        "file": {"type": "string", "format": "binary", "description": "The photo"},
        "label": {
            "type": "string",
            "description": "Class id; 'not_a_flower' to agree that the photo shows no flower; empty for 'I don't know'",
        },
        "predicted": {"type": "string", "description": "What the model said (optional)"},
        "band": {"type": "string", "description": "The answer's band as the visitor saw it (optional)"},
        "observation_id": {
            "type": "string",
            "description": "The id /predict/observation gave: up to 5 of its photos, one label for all",
        },
    },
    {"application/json": {"schema": MeasurementFeedback.model_json_schema()}},
)


def _label(raw: str | None, known: set[str]) -> str | None:
    """A visitor's label must name a species the catalogue or the served model knows: one anonymous
    vote never creates a species (a curator adds it to the catalogue first). ``not_a_flower`` (only in
    ``known`` for photos) is a visitor agreeing that a photo shows no flower: a vote, never a class."""
    label = (raw or "").strip().lower().replace(" ", "_")
    if not label:
        return None
    if not _LABEL.match(label) or label not in known:
        shown = ", ".join(sorted(known)[:30])
        raise HTTPException(422, f"unknown label {label[:100]!r}; use a class id ({shown}) or leave it empty")
    return label


async def _store(request: Request, write: Callable[..., str], *args: Any, **kw: Any) -> str:
    """Write feedback within the inbox's quota: 507 (and nothing stored) when the quota or the disk
    is full, 503 while the inbox's database does not answer; predictions go on either way."""
    state = request.app.state
    try:
        return await run_in_threadpool(write, *args, **kw)
    except InboxFull as full:
        state.metrics.rejected.labels("inbox_quota").inc()
        raise HTTPException(507, f"{full}: feedback is not being accepted now, please try again later") from None
    except InboxConflict as err:
        raise HTTPException(422, str(err)) from None
    except InboxUnavailable as err:
        raise inbox_unavailable(request, err) from None
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        state.metrics.rejected.labels("disk_full").inc()
        raise HTTPException(507, "the server's disk is full: feedback is not being accepted now") from None


async def _voter(request: Request) -> str:
    """This client's voter pseudonym (a keyed hash of its address; the address is never stored)."""
    state = request.app.state
    salt = getattr(state, "voter_salt", None)
    if salt is None:
        store: Inbox = state.inbox
        try:
            salt = state.voter_salt = await run_in_threadpool(store.voter_salt)
        except InboxUnavailable as err:
            raise inbox_unavailable(request, err) from None
    return voter(salt, state.client_address(request))


def _version(request: Request, kind: str) -> str | None:
    slot = request.app.state.store.champions.get(kind)
    return slot.version if slot else None


async def _photo_answers(request: Request, slot: Slot | None, uploads: list[Upload]) -> list[dict[str, str | None]]:
    """What the serving model answers for these photos now (one batch, ~12 ms a photo): stored in each
    record, so the review queue and live accuracy never rely on what the visitor's page claims it was told."""
    if slot is None:
        return [{} for _ in uploads]
    batch = np.stack([u.tensor for u in uploads]).astype(np.float32)
    scores = await request.app.state.batcher.score(slot.predictor, batch)
    return [
        {"answer_version": slot.version, "answer_band": a.band, "answer_species": a.species}
        for a in slot.predictor.answers(scores, 1)
    ]


def _measurement_answer(slot: Slot | None, row: list[float]) -> dict[str, str | None]:
    """What the serving measurement model answers for these values now."""
    if slot is None:
        return {}
    (species,) = slot.predictor.predict(np.asarray([row], dtype=np.float32))
    return {"answer_version": slot.version, "answer_species": species}


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    status_code=201,
    openapi_extra=FEEDBACK_BODY,
    summary="Send a photo or a measurement with its label",
    responses={
        415: {"description": "Neither multipart nor JSON"},
        429: {"description": "Too many feedback requests from this address (see Retry-After)"},
        507: {"description": "The feedback inbox or the disk is full: nothing was stored"},
    },
)
async def feedback(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="Photos: a key the sender chose for this upload (8-100 of A-Z a-z 0-9 - _); a retry "
            "with the same key is recorded once and charged to the quota once"
        ),
    ] = None,
) -> FeedbackResponse:
    """Stores the photo (content-hash name, never the client's file name) or the measurement, with a
    metadata record, atomically in the collection inbox. Nothing is stored unless sent here. A phone
    that queued feedback without signal sends it later with an ``Idempotency-Key``."""
    settings: Settings = request.app.state.settings
    check_rate(request, request.app.state.feedback_buckets, "rate_feedback")
    content_type = request.headers.get("content-type", "")
    store = request.app.state.store
    if content_type.startswith("application/json"):
        try:
            record = MeasurementFeedback.model_validate_json(await request.body())
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise HTTPException(422, f"{where}: {first['msg']}") from None
        slot = store.champions.get("measurements")
        known = set(slot.predictor.classes) if slot else set(settings.tabular_classes)
        label = _label(record.label, known)
        if label is None:
            raise HTTPException(422, "label: a measurement needs the species it is")
        specimen = await _store(
            request,
            request.app.state.inbox.store_measurement,
            record.as_row(),
            label,
            predicted=record.predicted,  # what the visitor's page claims it was told
            model_version=_version(request, "measurements"),
            voter=await _voter(request),
            **_measurement_answer(slot, record.as_row()),
        )
        request.app.state.metrics.feedback.labels("measurements").inc()
        return FeedbackResponse(stored=True, kind="measurements", id=specimen, label=label)
    key = None
    if idempotency_key is not None:
        if not _KEY.match(idempotency_key):
            raise HTTPException(422, "Idempotency-Key: 8-100 characters of A-Z, a-z, 0-9, '-' and '_'")
        key = hashlib.sha256(idempotency_key.encode()).hexdigest()
    slot = store.champions.get("photos")
    form = await read_form(request, MAX_PHOTOS)
    try:
        size = slot.predictor.input_size if slot else INPUT_SIZE
        uploads = await decode_uploads(form, settings.serve_max_pixels, settings.max_upload_bytes, size)
        raw_label, predicted, shown_band = form.get("label"), form.get("predicted"), form.get("band")
        cited = form.get("observation_id")
    finally:
        await form.close()
    observation_id = await _observation(request, cited if isinstance(cited, str) else None, uploads)
    label = _label(raw_label if isinstance(raw_label, str) else None, known_species(request) | {NOT_A_FLOWER})
    predicted_text = predicted[:100] if isinstance(predicted, str) else None
    claimed_band = shown_band if isinstance(shown_band, str) and shown_band in BANDS else None
    voter_id = await _voter(request)
    shas = []
    answers = await _photo_answers(request, slot, uploads)
    for index, (upload, answered) in enumerate(zip(uploads, answers, strict=True)):
        record_id = None if key is None else "k" + (key[:15] if index == 0 else f"{key[:12]}{index:03d}")
        extra = {"observation_id": observation_id} if observation_id else {}
        shas.append(
            await _store(
                request,
                request.app.state.inbox.store_photo,
                upload.data,
                upload.info.suffix,
                label,
                predicted=predicted_text,  # what the visitor's page claims it was told (shown to curators as such)
                band=claimed_band,
                record_id=record_id,
                model_version=_version(request, "photos"),
                voter=voter_id,
                **extra,
                **answered,
            )
        )
    sha = shas[0]
    request.app.state.metrics.feedback.labels("photos").inc(len(shas))
    return FeedbackResponse(stored=True, kind="photos", id=sha, label=label, ids=shas, observation_id=observation_id)


_OBSERVATION = re.compile(r"^obs_[A-Za-z0-9_\-]{8,40}$")


async def _observation(request: Request, cited: str | None, uploads: list[Upload]) -> str | None:
    """The observation id a photo feedback cites, checked: every photo sent must be one the server
    answered under that id. Without an id, exactly one photo."""
    cited = (cited or "").strip()
    if not cited:
        if len(uploads) > 1:
            raise HTTPException(
                422, "file: one photo per feedback, or cite the observation_id /predict/observation gave for up to 5"
            )
        return None
    if not _OBSERVATION.match(cited):
        raise HTTPException(422, "observation_id: use the id /predict/observation answered (obs_...)")
    book: ObservationBook = request.app.state.observations
    covered = await run_in_threadpool(book.photos, cited)
    if not covered:
        raise HTTPException(422, f"observation_id {cited}: this server never answered such an observation")
    strangers = [i + 1 for i, u in enumerate(uploads) if sha256_bytes(u.data) not in covered]
    if strangers:
        listed = ", ".join(map(str, strangers))
        raise HTTPException(422, f"photo {listed}: not one of the photos of observation {cited}")
    return cited
