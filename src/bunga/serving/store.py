"""The model store: one slot per data kind, swapped atomically (blue/green).

A request takes the slot once and keeps it, so it finishes on the version it started with. A new
version is fully loaded and checked (bunga.bundle_check: its graph run the way requests run it, its
answers to the reference inputs its card recorded) before the swap; a failed load or check leaves the
old one serving.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, replace

from bunga.bundle_check import verify
from bunga.errors import BungaError
from bunga.predict import Predictor
from bunga.schemas import ModelCard
from bunga.serving.heap import release_free_heap
from bunga.serving.registry import ModelSource
from bunga.serving.schemas import ReloadResult

log = logging.getLogger("bunga.serving")
CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class Slot:
    """A loaded, checked model and what it is."""

    predictor: Predictor
    card: ModelCard
    stale_since: str | None = None  # served from local disk while the registry is unreachable
    warnings: tuple[str, ...] = ()  # why it was checked less than a current bundle (shown in /model)
    fingerprint: str | None = None  # the source's fingerprint of the bundle it was loaded from

    @property
    def version(self) -> str:
        """The version to report in responses."""
        return self.card.version or self.card.onnx_sha256[:12]


class ModelStore:
    """Champions (and optional challengers for a canary) of every served kind."""

    def __init__(self, source: ModelSource, kinds: list[str]) -> None:
        self.source = source
        self.kinds = kinds
        self.champions: dict[str, Slot] = {}
        self.challengers: dict[str, Slot] = {}
        self.errors: dict[str, str] = {}
        self.served: dict[str, set[str]] = {}  # every version this store has loaded, per kind
        self.challenger_percent = 0.0
        self._lock = threading.Lock()
        self._random = random.Random()

    def load(self, kind: str, alias: str, current: Slot | None = None) -> Slot | None:
        """Resolve, load and check one model; None when the alias points nowhere. When the alias
        still names the registry version and run ``current`` serves, ``current`` is kept (not reloaded)."""
        resolved = self.source.resolve(kind, alias)
        if resolved is None:
            return None
        if current is not None and resolved.version is not None and resolved.run_id is not None:
            same = (current.version, current.card.run_id) == (resolved.version, resolved.run_id)
            if same:  # nothing new to load: keep it (and say whether the registry answered)
                return replace(current, stale_since=resolved.stale_since)
        if current is not None and resolved.fingerprint is not None and resolved.fingerprint == current.fingerprint:
            return current  # the same folder bundle: a poll costs one small read, not a load
        predictor = Predictor(resolved.folder, threads=1 if kind == "measurements" else None)
        if predictor.kind != kind:
            raise BungaError(f"{resolved.folder} holds a {predictor.kind} model, not a {kind} model")
        if kind == "photos" and (predictor.card.abstention is None or predictor.card.not_flower is None):
            raise BungaError(
                f"{resolved.folder} has no abstention or not-a-flower section in its card: it would name a "
                "flower for any photo; retrain it with this version of bunga"
            )
        warnings = verify(predictor)
        card = predictor.card.model_copy(
            update={
                "version": resolved.version or predictor.card.version,
                "alias": alias,
                "run_id": resolved.run_id or predictor.card.run_id,
            }
        )
        for warning in warnings:
            log.warning("%s model %s: %s", kind, card.version, warning)
        return Slot(predictor, card, resolved.stale_since, tuple(warnings), resolved.fingerprint)

    def reload(self) -> list[ReloadResult]:
        """Re-resolve every alias and swap what changed; one reload at a time."""
        with self._lock:
            results = [self._reload_one(kind, CHAMPION, self.champions) for kind in self.kinds]
            if self.challenger_percent > 0:
                for kind in self.kinds:
                    self._reload_one(kind, CHALLENGER, self.challengers)
            return results

    def _reload_one(self, kind: str, alias: str, slots: dict[str, Slot]) -> ReloadResult:
        old = slots.get(kind)
        old_version = old.version if old else None
        try:
            new = self.load(kind, alias, old)
        except Exception as err:  # any failure must leave the old version serving
            message = str(err) if isinstance(err, BungaError) else f"load failed: {type(err).__name__}"
            if alias == CHAMPION:
                self.errors[kind] = message
            log.warning("reload of %s@%s failed, keeping %s: %s", kind, alias, old_version, message)
            return ReloadResult(kind=kind, status="failed", old_version=old_version, error=message)
        if alias == CHAMPION:
            self.errors.pop(kind, None)
        if new is None:
            if old is None and alias == CHAMPION:
                self.errors[kind] = f"no {kind} model at alias {alias} in {self.source.describe()}"
            return ReloadResult(
                kind=kind,
                status="absent" if old is None else "unchanged",
                old_version=old_version,
                new_version=old_version,
            )
        if old is not None and (old.version, old.card.onnx_sha256) == (new.version, new.card.onnx_sha256):
            if old.stale_since != new.stale_since:  # the registry went away or came back
                slots[kind] = replace(old, stale_since=new.stale_since)
            return ReloadResult(kind=kind, status="unchanged", old_version=old_version, new_version=old_version)
        slots[kind] = new  # the atomic switch: one reference assignment
        self.served.setdefault(kind, set()).add(new.version)
        release_free_heap()  # the new graph's parse buffers, freed once its session was built
        log.info("%s@%s now serves version %s (was %s)", kind, alias, new.version, old_version)
        return ReloadResult(kind=kind, status="swapped", old_version=old_version, new_version=new.version)

    def set_traffic(self, percent: float) -> None:
        """Send ``percent`` of requests to the challengers (loaded now when needed)."""
        with self._lock:
            if percent > 0:
                for kind in self.kinds:
                    result = self._reload_one(kind, CHALLENGER, self.challengers)
                    if result.status == "failed":
                        raise BungaError(f"cannot load the {kind} challenger: {result.error}")
            else:
                self.challengers.clear()
            self.challenger_percent = percent

    def has_served(self, kind: str, version: str) -> bool:
        """True when this store has loaded that version of a kind since it started."""
        return version in self.served.get(kind, ())

    def pick(self, kind: str) -> Slot | None:
        """The slot that answers this request (the challenger for the canary share)."""
        percent = self.challenger_percent
        if percent > 0 and kind in self.challengers and self._random.random() * 100 < percent:
            return self.challengers[kind]
        return self.champions.get(kind)

    def troubled(self) -> bool:
        """True while a kind failed to load or serves a stale bundle (retry sooner)."""
        return bool(self.errors) or any(s.stale_since for s in self.champions.values())

    def ready(self) -> bool:
        """True when at least one kind is loaded (and checked)."""
        return bool(self.champions)
