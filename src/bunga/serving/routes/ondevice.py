"""What the page needs to identify photos on the phone: the served photo graph itself, versioned by
its sha256 (an ETag, so a phone checks for a new model with one cheap request)."""

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
from bunga.serving.deps import StoreDep
from bunga.serving.limits import check_rate
from bunga.serving.references import reference_info

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


@router.get(
    "/models/photos/model.onnx",
    response_class=Response,
    summary="The served photo graph, for identification in the browser",
    responses={
        200: {"content": {"application/octet-stream": {}}},
        304: {"description": "The phone holds this version already (If-None-Match)"},
        503: {"description": "No photo model is loaded"},
    },
)
async def photo_graph(request: Request, store: StoreDep) -> Response:
    """The champion's ONNX graph, byte for byte (the browser checks its sha256, the ``ETag``, before
    it replaces a cached model); ``X-Model-Version`` names the version."""
    slot = store.champions.get("photos")
    if slot is None:
        raise HTTPException(503, "no photo model is loaded; train one with `bunga pipeline`, then reload")
    sha = slot.card.onnx_sha256
    headers = {"ETag": f'"{sha}"', "Cache-Control": "no-cache", "X-Model-Version": slot.version}
    if request.headers.get("if-none-match", "").strip() == f'"{sha}"':
        return Response(status_code=304, headers=headers)
    try:
        data = await run_in_threadpool(slot.predictor.model_path.read_bytes)
    except OSError:
        raise HTTPException(503, "the photo model's graph is being replaced; try again") from None
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get(
    "/models/photos/rules",
    summary="How the served photo model's outputs become an answer (for the browser)",
    responses={503: {"description": "No photo model is loaded"}},
)
async def photo_rules(store: StoreDep) -> dict[str, Any]:
    """Everything the page needs to answer exactly as ``/predict/image`` does from the graph's outputs:
    classes, the abstention rule, the not-a-flower rule with its reference quantiles, the sure band's
    threshold and the candidate rule; ``sha256`` names the graph they belong to."""
    slot = store.champions.get("photos")
    if slot is None:
        raise HTTPException(503, "no photo model is loaded; train one with `bunga pipeline`, then reload")
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


class PhoneAnswer(BaseModel):
    """One answer computed on a phone, as the page logs it (no photo: its sha256 only)."""

    photo_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    model_version: str = Field(min_length=1, max_length=100)
    predicted: str | None = Field(None, max_length=100, description="The top species; null when not recognised")
    band: Literal["sure", "possible", "not_recognised", "not_a_flower"]
    top_probability: float = Field(ge=0, le=1)
    abstain_score: float | None = Field(None, ge=0, le=1)
    at: float = Field(description="When it was answered (Unix seconds)")


class PhoneAnswers(BaseModel):
    """A batch of answers computed on one phone while it had no signal."""

    records: list[PhoneAnswer] = Field(min_length=1, max_length=256)


@router.post(
    "/predictions/phone",
    status_code=202,
    summary="Answers computed on a phone, for the prediction log",
    responses={429: {"description": "Too many batches from this address (see Retry-After)"}},
)
async def phone_answers(request: Request, batch: PhoneAnswers, store: StoreDep) -> dict[str, int]:
    """The page sends the answers it computed without signal once it is online again, so monitoring,
    live accuracy and the canary see them (logged with ``arm = "phone"``). Answers older than the
    log's retention or from the future are refused with the batch."""
    check_rate(request, request.app.state.feedback_buckets, "rate_feedback")
    settings = request.app.state.settings
    now = time.time()
    oldest = now - settings.monitor_retention_days * 86400
    for n, record in enumerate(batch.records):
        if not oldest <= record.at <= now + 300:
            window = f"the last {settings.monitor_retention_days:g} days"
            raise HTTPException(422, f"records[{n}].at: outside the log's window ({window})")
        if recognised(record.band) and not record.predicted:
            raise HTTPException(422, f"records[{n}]: a {record.band} answer names its species in 'predicted'")
    slot = store.champions.get("photos")
    model = slot.card.name if slot else settings.model_photos
    logger = request.app.state.prediction_log
    if logger is not None:
        for record in batch.records:
            logger.add(
                Record(
                    record.at,
                    "photos",
                    model,
                    record.model_version,
                    "phone",
                    logged_label(record.band, record.predicted or ""),  # recognised: named (checked above)
                    record.top_probability,
                    recognised(record.band),
                    record.abstain_score,
                    0.0,  # computed on the phone: no server latency
                    photo_sha256=record.photo_sha256,
                )
            )
    for record in batch.records:
        request.app.state.metrics.photo_answers.labels(record.band).inc()
    return {"logged": len(batch.records) if logger is not None else 0}
