"""Observation ids: the server issues one (random) for each set of photos of one plant it answers,
and remembers which photos it covered, so a feedback citing the id can be checked. This worker's
recent observations are held in memory; older ones, and those another worker answered, are read
from the prediction log (which records each photo's observation id)."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from pathlib import Path

from bunga.monitor.store import observation_photos

MEMORY = 10_000  # observations this worker remembers without the log


class ObservationBook:
    """Issued observation ids and the photo sha256s each covered."""

    def __init__(self, log_target: str | Path | None) -> None:
        self.log_target = log_target
        self._recent: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self, shas: list[str]) -> str:
        """A new id for these photos (unguessable: a client cannot claim another's observation)."""
        observation_id = "obs_" + secrets.token_urlsafe(12)
        with self._lock:
            self._recent[observation_id] = frozenset(shas)
            while len(self._recent) > MEMORY:
                self._recent.popitem(last=False)
        return observation_id

    def photos(self, observation_id: str) -> frozenset[str]:
        """The sha256s the observation covered (empty: this server never issued it). Reads the log
        when this worker does not remember it (call from a thread: it may query the database)."""
        with self._lock:
            known = self._recent.get(observation_id)
        if known is not None:
            return known
        if self.log_target is None:
            return frozenset()
        return frozenset(observation_photos(self.log_target, observation_id))
