"""What the page needs to identify flowers on the phone: the served graphs themselves (photos and
measurements), versioned by their sha256 (an ETag; the rules name it too, so a phone checks for a new
model with one small request), and the log of the answers phones computed without signal."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response

from bunga.models.bands import CANDIDATE_MIN, MAX_CANDIDATES
from bunga.models.not_flower import P_FLOOR
from bunga.schemas import FEATURES, LENGTH_ABOVE, LENGTH_MAX
from bunga.serving.deps import StoreDep
from bunga.serving.downloads import download
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
        return await download(request, packed, kind, {**headers, "Content-Encoding": "gzip"})
    return await download(request, ORT / name, kind, headers)


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
        304: {"description": "The phone holds this version already (If-None-Match); costs no budget"},
        429: {"description": "This address has downloaded its budget of bytes (see Retry-After)"},
        503: {"description": "No model of this kind is loaded, or too many downloads at once (see Retry-After)"},
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
        return await download(request, slot.predictor.model_path, "application/octet-stream", headers)
    except OSError:
        raise HTTPException(503, f"the {kind} model's graph is being replaced; try again") from None


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
        "pool": slot.predictor.pool,  # the other_flowers class: when it wins, "not recognised"; never named
        "sure_threshold": card.bands.sure_threshold if card.bands else None,
        "sure_score": card.bands.score if card.bands else "top_probability",  # margin: needs the logits output
        "candidates": {"max": MAX_CANDIDATES, "min_probability": CANDIDATE_MIN},
        # several photos of one plant: thresholds per photo count ("2"; "3" for 3-5), as /predict/observation
        "observation": {
            k: {"abstain_threshold": o.abstain_threshold, "sure_threshold": o.sure_threshold}
            for k, o in card.observation.items()
        },
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
