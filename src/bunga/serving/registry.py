"""Where served models come from: an exported folder, or the MLflow registry by alias.

A remote tracking server is spoken to over its REST API with httpx, so a serving replica needs
neither MLflow nor its dependencies; a local store (sqlite:, file:) goes through bunga.tracking.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from bunga.bundle import CARD_FILE, MODEL_FILE
from bunga.errors import BungaError
from bunga.files import atomic_write_text

BUNDLE_PATH = "bunga"
log = logging.getLogger("bunga.serving")


class RegistryUnreachable(BungaError):
    """The tracking server (or its database) did not answer: an outage, not a missing model."""


@dataclass(frozen=True)
class Resolved:
    """A bundle folder on local disk and what it is."""

    folder: Path
    version: str | None
    alias: str
    run_id: str | None
    stale_since: str | None = None  # the registry was unreachable since then: this is the last good bundle
    fingerprint: str | None = None  # what the bundle is (a folder's card, hashed): unchanged -> nothing to load


class ModelSource(Protocol):
    """Resolves (kind, alias) to a local bundle folder."""

    def resolve(self, kind: str, alias: str) -> Resolved | None:
        """The bundle for an alias, or None when the alias points nowhere."""
        ...

    def describe(self) -> str:
        """Where models come from, for logs."""
        ...


class FolderSource:
    """Bundles written by `bunga export`: ``<root>/<kind>/`` (and ``<root>/<kind>-<alias>/``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def resolve(self, kind: str, alias: str) -> Resolved | None:
        folder = self.root / kind if alias == "champion" else self.root / f"{kind}-{alias}"
        try:
            card = (folder / CARD_FILE).read_bytes()  # small: a poll reads it, never the graph
        except OSError:
            return None
        return Resolved(folder, None, alias, None, fingerprint=hashlib.sha256(card).hexdigest())

    def describe(self) -> str:
        return f"folder {self.root}"


class RegistrySource:
    """Registered models by alias from an MLflow tracking store."""

    def __init__(self, uri: str, names: dict[str, str], cache_dir: Path, artifact_dir: Path) -> None:
        self.uri = uri.rstrip("/")
        self.names = names
        self.cache_dir = cache_dir / "bundles"
        self.artifact_dir = artifact_dir
        self.remote = self.uri.startswith(("http://", "https://"))
        self._down_since: dict[tuple[str, str], str] = {}

    # --- the last good bundle, for outages -------------------------------------------------------
    def _pointer(self, kind: str, alias: str) -> Path:
        return self.cache_dir / f"last-good-{kind}-{alias}.json"

    def _remember(self, kind: str, alias: str, version: str, run_id: str) -> None:
        pointer = self._pointer(kind, alias)
        record = {"version": version, "run_id": run_id}
        try:
            if not pointer.is_file() or json.loads(pointer.read_text()) != record:
                atomic_write_text(pointer, json.dumps(record))
        except (OSError, ValueError) as err:  # a cache that cannot be written only loses the fallback
            log.warning("cannot record the last good %s bundle: %s", kind, err)

    def _last_good(self, kind: str, alias: str, err: RegistryUnreachable) -> Resolved:
        """The bundle this alias resolved to last time, from local disk (its sha256 is checked when
        it is loaded); raises ``err`` when there is none."""
        first = (kind, alias) not in self._down_since
        since = self._down_since.setdefault((kind, alias), datetime.now(UTC).isoformat(timespec="seconds"))
        try:
            record = json.loads(self._pointer(kind, alias).read_text())
            folder = self.cache_dir / str(record["run_id"])
        except (OSError, ValueError, KeyError, TypeError):
            raise err from None
        if not (folder / CARD_FILE).is_file():
            raise err
        if first:
            log.warning("%s; serving the last good %s@%s (v%s) from %s", err, kind, alias, record["version"], folder)
        return Resolved(folder, str(record["version"]), alias, str(record["run_id"]), stale_since=since)

    def describe(self) -> str:
        return f"MLflow registry at {self.uri}"

    def resolve(self, kind: str, alias: str) -> Resolved | None:
        name = self.names[kind]
        if self.remote:
            try:
                found = self._rest_version(name, alias)
                if found is None:
                    return None
                version, run_id = found
                folder = self.cache_dir / run_id
                if not (folder / CARD_FILE).is_file():
                    self._rest_download(run_id, folder)
            except RegistryUnreachable as err:
                return self._last_good(kind, alias, err)
            self._down_since.pop((kind, alias), None)
            self._remember(kind, alias, version, run_id)
            return Resolved(folder, version, alias, run_id)
        from bunga.tracking import Tracker

        tracker = Tracker(self.uri, self.artifact_dir)
        info = tracker.version(name, alias)
        if info is None:
            return None
        return Resolved(tracker.download_bundle(info.run_id, self.cache_dir), info.version, alias, info.run_id)

    # --- MLflow REST -----------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _auth(self) -> tuple[str, str] | None:
        user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
        return (user, password) if user and password else None

    def _get(self, path: str, params: dict[str, str], raw: bool = False) -> object:
        import httpx

        try:
            response = httpx.get(
                f"{self.uri}{path}", params=params, headers=self._headers(), auth=self._auth(), timeout=30.0
            )
        except httpx.HTTPError as err:
            raise RegistryUnreachable(f"cannot reach MLflow at {self.uri}: {type(err).__name__}") from err
        if response.status_code == 404 or (response.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in response.text):
            return None
        if response.status_code >= 500:  # the server is up but its database is not, or it is overloaded
            raise RegistryUnreachable(f"MLflow at {self.uri} answered {response.status_code} for {path}")
        if response.status_code != 200:
            raise BungaError(f"MLflow at {self.uri} answered {response.status_code} for {path}")
        return response.content if raw else response.json()

    def _rest_version(self, name: str, alias: str) -> tuple[str, str] | None:
        if alias.isdigit():
            body = self._get("/api/2.0/mlflow/model-versions/get", {"name": name, "version": alias})
        else:
            body = self._get("/api/2.0/mlflow/registered-models/alias", {"name": name, "alias": alias})
        if not isinstance(body, dict) or "model_version" not in body:
            return None
        mv = body["model_version"]
        return str(mv["version"]), str(mv["run_id"])

    def _rest_download(self, run_id: str, folder: Path) -> None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            for name in (MODEL_FILE, CARD_FILE):
                content = self._get("/get-artifact", {"path": f"{BUNDLE_PATH}/{name}", "run_uuid": run_id}, raw=True)
                if not isinstance(content, bytes):
                    raise BungaError(f"run {run_id} has no {BUNDLE_PATH}/{name} artifact")
                (Path(tmp) / name).write_bytes(content)
            if not folder.exists():
                shutil.move(tmp, folder)
                Path(tmp).mkdir()  # TemporaryDirectory cleans up the path it made
