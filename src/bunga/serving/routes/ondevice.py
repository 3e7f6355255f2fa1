"""What the page needs to identify flowers on the phone: the served graphs themselves (photos and
measurements), versioned by their sha256 (an ETag; the rules name it too, so a phone checks for a new
model with one small request), and the log of the answers phones computed without signal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bunga.models.bands import CANDIDATE_MIN, MAX_CANDIDATES, logged_label, recognised
from bunga.models.not_flower import P_FLOOR
from bunga.monitor.log import Record
from bunga.schemas import FEATURES, LENGTH_ABOVE, LENGTH_MAX
from bunga.serving.deps import StoreDep
from bunga.serving.limits import check_rate
from bunga.serving.references import reference_info
from bunga.serving.store import ModelStore, Slot

router = APIRouter(tags=["on device"])
ORT = Path(__file__).resolve().parent.parent / "static" / "ort"
ORT_FILES = frozenset({"ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"})
ORT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm"}


@router.get("/static/ort/{name}", include_in_schema=False)
async def runtime_file(name: str, request: Request) -> Response:
    """The on-phone runtime, gzip-compressed when the browser accepts it (``make web`` writes the
    ``.gz`` beside each file: the WebAssembly build shrinks from 14.8 MB to 3.8 MB)."""
    if name not in ORT_FILES or not (ORT / name).is_file():
        raise HTTPException(404, "the on-phone runtime is not built into this server (make web)")
    kind = ORT_TYPES[Path(name).suffix]
    headers = {"Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    packed = ORT / f"{name}.gz"
    if "gzip" in request.headers.get("accept-encoding", "") and packed.is_file():
        return FileResponse(packed, media_type=kind, headers={**headers, "Content-Encoding": "gzip"})
    return FileResponse(ORT / name, media_type=kind, headers=headers)


Kind = Literal["photos", "measurements"]
KINDS: tuple[Kind, ...] = ("photos", "measurements")


def _champion(store: ModelStore, kind: str) -> Slot:
    slot: Slot | None = store.champions.get(kind)
    if slot is None:
        raise HTTPException(503, f"no {kind} model is loaded; train one with `bunga pipeline`, then reload")
    return slot


@router.get(
    "/models/{kind}/model.onnx",
    response_class=Response,
    summary="A served graph (photos or measurements), for identification in the browser",
    responses={
        200: {"content": {"application/octet-stream": {}}},
        304: {"description": "The phone holds this version already (If-None-Match)"},
        503: {"description": "No model of this kind is loaded"},
    },
)
async def model_graph(kind: Kind, request: Request, store: StoreDep) -> Response:
    """The champion's ONNX graph, byte for byte (the browser checks its sha256, the ``ETag``, before
    it replaces a cached model); ``X-Model-Version`` names the version."""
    slot = _champion(store, kind)
    sha = slot.card.onnx_sha256
    headers = {"ETag": f'"{sha}"', "Cache-Control": "no-cache", "X-Model-Version": slot.version}
    if request.headers.get("if-none-match", "").strip() == f'"{sha}"':
        return Response(status_code=304, headers=headers)
    try:
        data = await run_in_threadpool(slot.predictor.model_path.read_bytes)
    except OSError:
        raise HTTPException(503, f"the {kind} model's graph is being replaced; try again") from None
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get(
    "/models/photos/rules",
    summary="How the served photo model's outputs become an answer (for the browser)",
    responses={503: {"description": "No photo model is loaded"}},
)
async def photo_rules(store: StoreDep) -> dict[str, Any]:
    """Everything the page needs to answer exactly as ``/predict/image`` does from the graph's outputs:
    classes, the abstention rule, the not-a-flower rule with its reference quantiles, the sure band's
    threshold and the candidate rule; ``sha256`` names the graph they belong to (a phone compares it
    with the graph it holds: the cheap check for a new model)."""
    slot = _champion(store, "photos")
    card = slot.card
    return {
        "model_name": card.name,
        "model_version": slot.version,
        "sha256": card.onnx_sha256,
        "classes": card.classes,
        "input_size": slot.predictor.input_size,
        "abstention": card.abstention.model_dump() if card.abstention else None,
        "not_flower": card.not_flower.model_dump() if card.not_flower else None,
        "p_floor": P_FLOOR,
        "sure_threshold": card.bands.sure_threshold if card.bands else None,
        "candidates": {"max": MAX_CANDIDATES, "min_probability": CANDIDATE_MIN},
        "references": {c: info.model_dump() for c in card.classes if (info := reference_info(slot, c)) is not None},
    }


@router.get(
    "/models/measurements/rules",
    summary="What the served measurement model takes and answers (for the browser)",
    responses={503: {"description": "No measurement model is loaded"}},
)
async def measurement_rules(store: StoreDep) -> dict[str, Any]:
    """The classes in the graph's output order, the features in its input order with the range
    ``/predict`` accepts (centimetres), and ``sha256``, the graph they belong to."""
    slot = _champion(store, "measurements")
    return {
        "model_name": slot.card.name,
        "model_version": slot.version,
        "sha256": slot.card.onnx_sha256,
        "classes": slot.card.classes,
        "features": list(FEATURES),
        "range": {"above": LENGTH_ABOVE, "max": LENGTH_MAX},
    }


class PhoneAnswer(BaseModel):
    """One answer computed on a phone, as the page logs it: a photo's sha256 (never the photo) or the
    four measurements."""

    kind: Kind = "photos"
    photo_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="Photos: the photo's sha256")
    measurements: list[float] | None = Field(
        None, min_length=4, max_length=4, description="Measurements: the four values (cm) in FEATURES order"
    )
    model_version: str = Field(min_length=1, max_length=100)
    predicted: str | None = Field(None, max_length=100, description="The top species; null when not recognised")
    band: Literal["sure", "possible", "not_recognised", "not_a_flower"] | None = Field(
        None, description="Photos: the answer's band"
    )
    top_probability: float = Field(ge=0, le=1)
    abstain_score: float | None = Field(None, ge=0, le=1)
    at: float = Field(description="When it was answered (Unix seconds)")


class PhoneAnswers(BaseModel):
    """A batch of answers computed on one phone while it had no signal."""

    records: list[PhoneAnswer] = Field(min_length=1, max_length=256)


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
    return None


def _logged(record: PhoneAnswer, model: str) -> Record:
    """The prediction-log record of one checked answer (arm "phone", no server latency)."""
    if record.kind == "measurements":
        f1, f2, f3, f4 = record.measurements or (None, None, None, None)
        return Record(
            record.at, "measurements", model, record.model_version, "phone", record.predicted,
            record.top_probability, True, None, 0.0, f1, f2, f3, f4,
        )  # fmt: skip
    answer_band = record.band or "not_recognised"
    return Record(
        record.at, "photos", model, record.model_version, "phone",
        logged_label(answer_band, record.predicted or ""),  # recognised: named (checked before)
        record.top_probability, recognised(answer_band), record.abstain_score, 0.0,
        photo_sha256=record.photo_sha256,
    )  # fmt: skip


@router.post(
    "/predictions/phone",
    status_code=202,
    summary="Answers computed on a phone, for the prediction log",
    responses={429: {"description": "Too many batches from this address (see Retry-After)"}},
)
async def phone_answers(request: Request, batch: PhoneAnswers, store: StoreDep) -> dict[str, int]:
    """The page sends the answers it computed without signal once it is online again, so monitoring,
    live accuracy and the canary see them (logged with ``arm = "phone"``). Answers older than the
    log's retention or from the future are refused with the batch. A batch sent again (its answer was
    lost) is logged once: an answer is its time, kind and photo or measurements."""
    check_rate(request, request.app.state.feedback_buckets, "rate_feedback")
    settings = request.app.state.settings
    now = time.time()
    oldest = now - settings.monitor_retention_days * 86400
    for n, record in enumerate(batch.records):
        if not oldest <= record.at <= now + 300:
            window = f"the last {settings.monitor_retention_days:g} days"
            raise HTTPException(422, f"records[{n}].at: outside the log's window ({window})")
        if (problem := _problem(record)) is not None:
            raise HTTPException(422, f"records[{n}]: {problem}")
    models = {
        kind: slot.card.name if (slot := store.champions.get(kind)) else settings.model_name(kind) for kind in KINDS
    }
    logger = request.app.state.prediction_log
    if logger is not None:
        for record in batch.records:
            logger.add(_logged(record, models[record.kind]))
    for record in batch.records:
        if record.band is not None:
            request.app.state.metrics.photo_answers.labels(record.band).inc()
    return {"logged": len(batch.records) if logger is not None else 0}
