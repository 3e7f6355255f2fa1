"""The log of answers phones computed without signal (``POST /predictions/phone``).

A phone's record is a claim, not a fact: it must name a model version this deployment has served,
it is rate-limited per record, it is logged with ``arm = "phone"`` (reported apart by `bunga monitor`,
never used for live accuracy, never dropping a server row from the log's queue) and counted in the
band counter under ``arm="phone"``."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from bunga.models.bands import logged_label, recognised
from bunga.monitor.log import PHONE_ARM, Record
from bunga.monitor.store import server_versions
from bunga.schemas import LENGTH_ABOVE, LENGTH_MAX
from bunga.serving.deps import StoreDep
from bunga.serving.limits import check_rate
from bunga.serving.store import ModelStore

router = APIRouter(tags=["on device"])
Kind = Literal["photos", "measurements"]
KINDS: tuple[Kind, ...] = ("photos", "measurements")
LOG_REREAD_S = 60.0  # an unknown version re-reads the log's served versions at most this often


class PhoneAnswer(BaseModel):
    """One answer computed on a phone, as the page logs it: a photo's sha256 (never the photo) or the
    four measurements."""

    kind: Kind = "photos"
    photo_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="Photos: the photo's sha256")
    measurements: list[float] | None = Field(
        None, min_length=4, max_length=4, description="Measurements: the four values (cm) in FEATURES order"
    )
    model_version: str = Field(
        min_length=1, max_length=100, description="A version this deployment has served (its graph was downloaded)"
    )
    predicted: str | None = Field(None, max_length=100, description="The top species; null when not recognised")
    band: Literal["sure", "possible", "not_recognised", "not_a_flower"] | None = Field(
        None, description="Photos: the answer's band"
    )
    photos: list[Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]] | None = Field(
        None,
        min_length=2,
        max_length=5,
        description="Photos of one plant answered as one observation: every photo's sha256, photo_sha256 first",
    )
    top_probability: float = Field(ge=0, le=1)
    abstain_score: float | None = Field(None, ge=0, le=1)
    at: float = Field(description="When it was answered (Unix seconds; at most BUNGA_PHONE_CLOCK_SKEW_S ahead)")


class PhoneAnswers(BaseModel):
    """A batch of answers computed on one phone while it had no signal."""

    records: list[PhoneAnswer] = Field(min_length=1, max_length=256)


class ServedVersions:
    """Which model versions this deployment has served: those this worker loaded, and those the
    prediction log holds server answers of (other workers and replicas, earlier runs), the log re-read
    at most once a minute and only when a version is not known yet."""

    def __init__(self, store: ModelStore, log_target: str | None) -> None:
        self.store, self.log_target = store, log_target
        self.logged: set[tuple[str, str]] = set()
        self.read_at = -LOG_REREAD_S
        self._lock = threading.Lock()

    def known(self, kind: str, version: str) -> bool:
        """True for a version of ``kind`` this deployment served (may read the log: call off the loop)."""
        if self.store.has_served(kind, version) or (kind, version) in self.logged:
            return True
        if self.log_target is None:
            return False
        with self._lock:
            if time.monotonic() - self.read_at >= LOG_REREAD_S:
                self.logged = server_versions(self.log_target)
                self.read_at = time.monotonic()
        return (kind, version) in self.logged


def _problem(record: PhoneAnswer) -> str | None:
    """What is wrong with one answer beyond its fields' own types (one sentence), or None."""
    if record.kind == "measurements":
        values = record.measurements
        if values is None or record.photo_sha256 is not None or record.band is not None:
            return "a measurements answer carries 'measurements' (four values), no photo_sha256 and no band"
        if not all(LENGTH_ABOVE < v <= LENGTH_MAX for v in values):
            return f"measurements: each is above {LENGTH_ABOVE:g} and at most {LENGTH_MAX:g} cm"
        return None if record.predicted else "a measurements answer names its species in 'predicted'"
    if record.photo_sha256 is None or record.band is None or record.measurements is not None:
        return "a photos answer carries photo_sha256 and band, no measurements"
    if recognised(record.band) and not record.predicted:
        return f"a {record.band} answer names its species in 'predicted'"
    if record.photos is not None and (record.photos[0] != record.photo_sha256 or len(set(record.photos)) < 2):
        return "an observation lists its photos' sha256s, photo_sha256 first, at least two different"
    return None


def _logged(record: PhoneAnswer, model: str) -> Record:
    """The prediction-log record of one checked answer (arm "phone", no server latency)."""
    if record.kind == "measurements":
        f1, f2, f3, f4 = record.measurements or (None, None, None, None)
        return Record(
            record.at, "measurements", model, record.model_version, PHONE_ARM, record.predicted,
            record.top_probability, True, None, 0.0, f1, f2, f3, f4,
        )  # fmt: skip
    answer_band = record.band or "not_recognised"
    # an observation's id on a phone is its photos' (no server issued one): a claim, like the answer
    observation = "phone_" + hashlib.sha256("".join(record.photos).encode()).hexdigest()[:24] if record.photos else None
    return Record(
        record.at, "photos", model, record.model_version, PHONE_ARM,
        logged_label(answer_band, record.predicted or ""),  # recognised: named (checked before)
        record.top_probability, recognised(answer_band), record.abstain_score, 0.0,
        photo_sha256=record.photo_sha256, band=answer_band,
        observation_id=observation, observation_photos=len(record.photos) if record.photos else None,
    )  # fmt: skip


@router.post(
    "/predictions/phone",
    status_code=202,
    summary="Answers computed on a phone, for the prediction log",
    responses={429: {"description": "Too many records from this address (see Retry-After)"}},
)
async def phone_answers(request: Request, batch: PhoneAnswers, store: StoreDep) -> dict[str, int]:
    """The page sends the answers it computed without signal once it is online again; they are logged
    with ``arm = "phone"`` and reported apart from the server's answers. Refused with the batch (422):
    a version this deployment never served, an answer older than the log's retention or more than
    ``BUNGA_PHONE_CLOCK_SKEW_S`` ahead of the server's clock. The rate limit counts records. A batch
    sent again (its answer was lost) is logged once: an answer is its time, kind and photo or
    measurements."""
    state = request.app.state
    settings = state.settings
    check_rate(request, state.phone_buckets, "rate_phone", len(batch.records), "phone answers")
    now = time.time()
    oldest = now - settings.monitor_retention_days * 86400
    served: ServedVersions = state.served_versions
    for n, record in enumerate(batch.records):
        if not oldest <= record.at <= now + settings.phone_clock_skew_s:
            window = (
                f"the last {settings.monitor_retention_days:g} days, at most {settings.phone_clock_skew_s:g} s ahead"
            )
            raise HTTPException(422, f"records[{n}].at: outside the log's window ({window})")
        if (problem := _problem(record)) is not None:
            raise HTTPException(422, f"records[{n}]: {problem}")
    first = {(r.kind, r.model_version): n for n, r in reversed(list(enumerate(batch.records)))}
    for (kind, version), n in sorted(first.items(), key=lambda item: item[1]):
        if not await run_in_threadpool(served.known, kind, version):
            raise HTTPException(422, f"records[{n}].model_version: {version!r} is no {kind} model this server served")
    models = {
        kind: slot.card.name if (slot := store.champions.get(kind)) else settings.model_name(kind) for kind in KINDS
    }
    logger = state.prediction_log
    if logger is not None:
        for record in batch.records:
            logger.add(_logged(record, models[record.kind]))
    for record in batch.records:
        if record.band is not None:
            state.metrics.photo_answers.labels(record.band, PHONE_ARM).inc()
    return {"logged": len(batch.records) if logger is not None else 0}
