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


@router.get("/sw.js")
async def service_worker() -> FileResponse:
    """The service worker, from the root so that its scope is the whole page (never cached long: a new
    version must reach phones on their next visit)."""
    return FileResponse(STATIC / "sw.js", media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get("/manifest.webmanifest")
async def manifest() -> FileResponse:
    """The web app manifest: the page installs as an app."""
    return FileResponse(STATIC / "manifest.webmanifest", media_type="application/manifest+json")
