"""The staff review page and its API: the queue of visitors' photos no curator has decided, each
photo, and one decision per request, saved at once (bunga.garden.decisions). Curators sign in with their own
token (``BUNGA_CURATORS``; the admin token too), sent in the Authorization header, never in a URL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from bunga.catalog import SpeciesInfo
from bunga.errors import BungaError
from bunga.garden import catalog_edits, decisions, review_queue
from bunga.garden.inbox import Inbox, InboxUnavailable
from bunga.garden.label_studio import signed_ok
from bunga.imaging import ImageRejected, thumbnail_jpeg
from bunga.serving.deps import CatalogDep, CuratorDep, SettingsDep, curator_labels, inbox_unavailable, require_curator
from bunga.serving.photos import read_form, rejection_status
from bunga.serving.routes.page import STATIC

router = APIRouter(
    prefix="/review",
    tags=["review"],
    responses={
        401: {"description": "No curator token"},
        403: {"description": "Not a curator's token"},
        429: {"description": "Too many wrong tokens from this address (see Retry-After)"},
        404: {"description": "Review disabled (no curator configured), or no such photo"},
        503: {"description": "The inbox's database does not answer"},
    },
)
SHA = r"^[0-9a-f]{64}$"


class QueueEntry(BaseModel):
    """One photo waiting for (or, with ``decided=true``, given) a curator's decision."""

    sha256: str
    received: str
    proposed: str | None = Field(
        description="What one key accepts: not_a_flower when the server saw no flower, else the visitors' most "
        "voted species, else their 'not a flower', else the server's species"
    )
    votes: dict[str, int] = Field(
        description="Label -> distinct visitors ('' is 'I don't know', 'not_a_flower' agrees there is no flower)"
    )
    species: str | None = Field(description="The server's own answer when the photo arrived (null: not recognised)")
    band: str | None = Field(description="The server's band for the photo (records from before it answered: null)")
    model_version: str | None = Field(description="The version that gave the server's answer")
    claimed_species: str | None = Field(description="What the visitor's page claimed the model said (a claim)")
    claimed_band: str | None = Field(description="The band the visitor's page claimed (a claim)")
    observation_id: str | None = Field(None, description="The photos of one plant this one was sent with")
    observation_photos: list[str] = Field(
        [], description="The sha256s of that plant's photos in this queue, this one included (one label labels all)"
    )
    decision: str | None = None
    decided_label: str | None = None
    decided_by: str | None = None


class DecisionRequest(BaseModel):
    """A curator's decision: a species (``label``), ``not_a_flower`` or ``reject``."""

    sha256: str = Field(pattern=SHA)
    decision: Literal["label", "not_a_flower", "reject"]
    label: str | None = Field(None, max_length=100)


@contextlib.contextmanager
def _answering(request: Request) -> Iterator[None]:
    """503 with Retry-After while the inbox's database does not answer."""
    try:
        yield
    except InboxUnavailable as err:
        raise inbox_unavailable(request, err) from None


def _inbox(request: Request) -> Inbox:
    inbox: Inbox = request.app.state.inbox
    return inbox


@router.get("", include_in_schema=False)
async def page() -> FileResponse:
    """The review page (it asks for the curator's token and keeps it in the tab's session only)."""
    return FileResponse(STATIC / "review.html", media_type="text/html")


@router.get("/queue", response_model=list[QueueEntry], summary="Photos waiting for a curator")
async def queue(
    request: Request,
    response: Response,
    curator: CuratorDep,
    band: Annotated[str | None, Query(description="Only this band")] = None,
    species: Annotated[str | None, Query(description="Only photos proposed as this species")] = None,
    since: Annotated[str | None, Query(description="Only photos received at or after this ISO time")] = None,
    decided: Annotated[bool, Query(description="Also photos already decided")] = False,
) -> list[QueueEntry]:
    """Undecided photos, doubtful bands first by the server's band ("possible", then not recognised,
    ...), oldest first. Never cached (it changes with every decision)."""
    response.headers["Cache-Control"] = "no-store"
    with _answering(request):
        files = await run_in_threadpool(_inbox(request).review_files)
    items = review_queue.build(files)
    chosen = [
        i
        for i in review_queue.ordered(list(items.values()))
        if (decided or i.decision is None)
        and (band is None or i.answer_band == band)
        and (species is None or i.proposed == species)
        and (since is None or i.received >= since)
    ]
    together = review_queue.plants(chosen)
    return [
        QueueEntry(
            sha256=i.sha256,
            observation_id=i.observation,
            observation_photos=together.get(i.observation or "", []),
            received=i.received,
            proposed=i.proposed,
            votes=dict(i.votes),
            species=i.answer_species,
            band=i.answer_band,
            model_version=i.model_version,
            claimed_species=i.predicted,
            claimed_band=i.band,
            decision=i.decision.decision if i.decision else None,
            decided_label=i.decision.label if i.decision else None,
            decided_by=i.decision.curator if i.decision else None,
        )
        for i in chosen
    ]


@router.get("/photos/{sha256}", summary="A visitor's photo (curators, or a signed URL)", response_class=Response)
async def photo(
    request: Request,
    settings: SettingsDep,
    sha256: Annotated[str, PathParam(pattern=SHA, description="The photo's sha256")],
    expires: Annotated[int | None, Query(description="Signed URL: valid until (unix seconds)")] = None,
    signature: Annotated[str | None, Query(max_length=64, description="Signed URL: its signature")] = None,
    authorization: Annotated[str | None, Header(description="Bearer <a curator's token>")] = None,
) -> Response:
    """The stored photo's bytes, for a curator's token or a genuine, unexpired signed URL (the
    Label Studio export's)."""
    if signature is not None:
        if not signed_ok(settings.review_url_key, sha256, expires, signature):
            raise HTTPException(403, "this photo link is not valid (expired, altered, or signing is off)")
    else:
        require_curator(request, settings, authorization)
    with _answering(request):
        found = await run_in_threadpool(_inbox(request).photo, sha256)
    if found is None:
        raise HTTPException(404, "no such photo in the inbox")
    data, suffix = found
    media = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}.get(suffix, "application/octet-stream")
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})


@router.post("/decisions", status_code=201, summary="Decide one photo")
async def decide(request: Request, response: Response, curator: CuratorDep, body: DecisionRequest) -> dict[str, str]:
    """Saved at once, atomically, with the curator and the time; a later decision on the same photo
    wins (the earlier one is kept). ``label`` must name a species the catalogue or the model knows."""
    response.headers["Cache-Control"] = "no-store"
    label = (body.label or "").strip().lower().replace(" ", "_") or None
    if body.decision == "label" and label not in curator_labels(request):
        raise HTTPException(422, f"unknown species {str(label)[:100]!r}: add it to the catalogue first")
    inbox = _inbox(request)
    with _answering(request):
        if await run_in_threadpool(inbox.photo, body.sha256) is None:
            raise HTTPException(404, "no such photo in the inbox")
        name, text = decisions.record(body.sha256, body.decision, label, curator)
        await run_in_threadpool(inbox.store_decision, name, text)
    return {"sha256": body.sha256, "decision": body.decision, "label": label or "", "curator": curator}


SPECIES_FIELDS = {
    "id": {"type": "string", "description": "Class id: 2-60 of a-z, 0-9, '_' (spaces become '_')"},
    "nama": {"type": "string", "description": "Name in Bahasa Indonesia (required for a new species)"},
    "name": {"type": "string", "description": "Name in English"},
    "latin": {"type": "string"},
    "famili": {"type": "string"},
    "deskripsi": {"type": "string", "description": "Description in Bahasa Indonesia"},
    "description": {"type": "string", "description": "Description in English"},
    "file": {"type": "string", "format": "binary", "description": "A reference photo (optional)"},
}


@router.post(
    "/species",
    status_code=201,
    response_model=SpeciesInfo,
    summary="Add a species to the catalogue (or edit one)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["id", "nama"], "properties": SPECIES_FIELDS}
                }
            },
        }
    },
    responses={413: {"description": "Photo too large"}, 415: {"description": "Not multipart, or not a photo"}},
)
async def add_species(request: Request, curator: CuratorDep, settings: SettingsDep, catalog: CatalogDep) -> SpeciesInfo:
    """Saved at once as a catalogue edit in the shared inbox (a later edit of the same id wins; the
    earlier one is kept). Every worker and replica shows it within ``BUNGA_CATALOG_REFRESH_S``;
    visitors can vote for it and curators label photos with it; the next merge writes it into the
    dataset version and training learns it once it has enough photos."""
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = await request.form(max_files=0, max_fields=16, max_part_size=64 * 1024)  # no photo
    else:
        form = await read_form(request, 1, "send the species as a form: multipart/form-data (photo in 'file')")
    try:
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        upload = form.get("file")
        data = await upload.read(settings.max_upload_bytes + 1) if isinstance(upload, UploadFile) else b""
    finally:
        await form.close()
    if len(data) > settings.max_upload_bytes:
        raise HTTPException(413, f"the reference photo is over the limit of {settings.max_upload_bytes:,} bytes")
    try:
        jpeg = await run_in_threadpool(thumbnail_jpeg, data, settings.serve_max_pixels, 320) if data else None
        with _answering(request):
            info, name, text = await run_in_threadpool(
                catalog_edits.edit, catalog.base, _inbox(request), fields.get("id", ""), fields, jpeg, curator
            )
    except BungaError as err:
        raise HTTPException(422, str(err)) from None
    except ImageRejected as err:
        raise HTTPException(rejection_status(err), f"reference photo: {err}") from None
    with _answering(request):
        await run_in_threadpool(_inbox(request).store_catalog_edit, name, text)
        await run_in_threadpool(catalog.refresh)  # this worker at once; the others within seconds
    return catalog.entries.get(info.id, info)
