"""The visitors' web page (static files served by the app itself: no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    """The single page: photo and measurement tabs, Bahasa Indonesia by default."""
    return FileResponse(STATIC / "index.html", media_type="text/html")
