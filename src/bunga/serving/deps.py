"""Dependencies shared by the routes: the app's state, typed, and the admin check."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from bunga.config import Settings
from bunga.garden.inbox import InboxUnavailable
from bunga.schemas import OTHER_FLOWERS, RESERVED_IDS
from bunga.serving.limits import TokenBuckets, too_many
from bunga.serving.live_catalog import LiveCatalog
from bunga.serving.metrics import Metrics
from bunga.serving.store import ModelStore


def get_store(request: Request) -> ModelStore:
    """The model store of this app."""
    store: ModelStore = request.app.state.store
    return store


def get_settings(request: Request) -> Settings:
    """The settings this app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_catalog(request: Request) -> LiveCatalog:
    """The species catalogue, with curators' edits."""
    catalog: LiveCatalog = request.app.state.catalog
    return catalog


def known_species(request: Request) -> set[str]:
    """Labels a visitor's vote may give a photo: the catalogue's species (curators' additions
    included) and the served photo model's, never a decision word (the other_flowers pool is a
    curator's call: ``curator_labels``)."""
    slot = request.app.state.store.champions.get("photos")
    return (set(get_catalog(request).entries) | (set(slot.predictor.classes) if slot else set())) - RESERVED_IDS


def curator_labels(request: Request) -> set[str]:
    """Labels a curator may give a photo: the species visitors may name, and other_flowers ("another
    species, not in the catalogue": the pool the model learns never to name)."""
    return known_species(request) | {OTHER_FLOWERS}


def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


StoreDep = Annotated[ModelStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[LiveCatalog, Depends(get_catalog)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def _signing_in(request: Request) -> str:
    """This client's key for failed sign-ins; 429 + Retry-After while it has used up its tries (a
    guesser is slowed down before any token is compared)."""
    state = request.app.state
    client = str(state.client_address(request))
    failures: TokenBuckets | None = state.signin_failures
    if failures is not None and (wait := failures.waiting(client)) is not None:
        raise too_many(request, wait, "signin_failures", "failed sign-ins")
    return client


def _failed(request: Request, client: str, detail: str) -> HTTPException:
    """A 403 for a wrong token, charged to the client's failed sign-ins."""
    failures: TokenBuckets | None = request.app.state.signin_failures
    if failures is not None:
        failures.take(client)
    return HTTPException(403, detail)


def require_admin(
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(description="Bearer <BUNGA_ADMIN_TOKEN>")] = None,
) -> None:
    """Admin endpoints exist only when a token is configured, and need it (compared in constant time)."""
    token = settings.admin_token
    if not token:
        raise HTTPException(404, "admin endpoints are disabled: set BUNGA_ADMIN_TOKEN to enable them")
    if not authorization:
        raise HTTPException(
            401, "admin token required (Authorization: Bearer ...)", headers={"WWW-Authenticate": "Bearer"}
        )
    client = _signing_in(request)
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise _failed(request, client, "wrong admin token")


AdminDep = Depends(require_admin)


def require_curator(
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(description="Bearer <a curator's token>")] = None,
) -> str:
    """The signed-in curator's name (tokens compared by their sha256, in constant time); 401/403, and
    429 + Retry-After once a client has failed too many times."""
    if not settings.curators and not settings.admin_token:
        raise HTTPException(404, "the review page is disabled: set BUNGA_CURATORS (or BUNGA_ADMIN_TOKEN)")
    if not authorization:
        raise HTTPException(
            401, "curator token required (Authorization: Bearer ...)", headers={"WWW-Authenticate": "Bearer"}
        )
    client = _signing_in(request)
    scheme, _, given = authorization.partition(" ")
    given = given.strip()
    if scheme.lower() == "bearer" and given:
        digest = hashlib.sha256(given.encode()).hexdigest()
        for name, expected in settings.curators.items():
            if hmac.compare_digest(digest, expected.strip().lower()):
                return name
        if settings.admin_token and hmac.compare_digest(given.encode(), settings.admin_token.encode()):
            return "admin"
    raise _failed(request, client, "not a curator's token")


CuratorDep = Annotated[str, Depends(require_curator)]


def inbox_unavailable(request: Request, err: InboxUnavailable) -> HTTPException:
    """503 with Retry-After while the inbox's database does not answer (counted under its reason)."""
    request.app.state.metrics.rejected.labels("inbox_unavailable").inc()
    return HTTPException(503, f"{err}: please try again later", headers={"Retry-After": "30"})
