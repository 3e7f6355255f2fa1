"""Reading uploaded photos from a multipart form, within the configured limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from bunga.imaging import INPUT_SIZE, ImageRejected, PhotoInfo, load_photo, to_tensor


@dataclass
class Upload:
    """One decoded upload."""

    data: bytes
    info: PhotoInfo
    tensor: np.ndarray


def multipart_openapi(properties: dict[str, Any], other: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI for a multipart body whose field 'file' is required (the app parses it itself, within
    its limits), plus any other content types the endpoint accepts."""
    form = {"schema": {"type": "object", "required": ["file"], "properties": properties}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": form, **(other or {})}}}


async def read_form(
    request: Request, max_files: int, wrong_type: str = "send the photo as multipart/form-data in the field 'file'"
) -> FormData:
    """Parse a multipart body with bounded files and fields (thousands of parts are refused)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(415, wrong_type)
    return await request.form(max_files=max_files, max_fields=16, max_part_size=64 * 1024)


def rejection_status(err: ImageRejected) -> int:
    """413 for a photo too large, 415 for one that is not a JPEG, PNG or WebP, 422 otherwise."""
    text = str(err)
    if "over the limit" in text or "too many pixels" in text:
        return 413
    return 415 if "not accepted" in text or "not a readable image" in text else 422


def _decode(data: bytes, index: int, max_pixels: int, size: int) -> Upload:
    try:
        image, info = load_photo(data, max_pixels=max_pixels, min_side=8, draft_to=size)
    except ImageRejected as err:
        raise HTTPException(rejection_status(err), f"photo {index + 1}: {err}") from None
    return Upload(data, info, to_tensor(image, size))


async def decode_uploads(form: FormData, max_pixels: int, max_bytes: int, size: int = INPUT_SIZE) -> list[Upload]:
    """Every 'file' part decoded and preprocessed for a graph that takes ``size`` px squares, or a 4xx
    naming the photo that is wrong."""
    files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    if not files:
        raise HTTPException(422, "send at least one photo in the multipart field 'file'")
    uploads = []
    for index, upload in enumerate(files):
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, f"photo {index + 1} is over the limit of {max_bytes:,} bytes")
        if not data:
            raise HTTPException(422, f"photo {index + 1} is empty (0 bytes)")
        uploads.append(await run_in_threadpool(_decode, data, index, max_pixels, size))
    return uploads
