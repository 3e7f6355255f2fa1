"""The review queue: the inbox's visitor photos with their votes, the server's own answer for each
(model version, band and species, computed when the photo arrived and stored with the feedback
record), what the visitor's page claimed it was told (shown as the visitor's claim, never trusted) and
the decision in force. Built from the inbox's record files alone, so a directory inbox and a database
inbox give the same queue."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from bunga.garden import decisions
from bunga.garden.decisions import Decision
from bunga.schemas import NOT_A_FLOWER

BAND_ORDER = {"possible": 0, "not_recognised": 1, "not_a_flower": 2, "sure": 3}  # the doubtful first


@dataclass
class QueueItem:
    """One visitor photo as a curator sees it."""

    sha256: str
    received: str  # when the first record of it arrived (ISO time)
    votes: Counter[str] = field(default_factory=Counter)  # label -> distinct voters ("" for "I don't know")
    answer_species: str | None = None  # the server's answer (None: not recognised, or a record from before)
    answer_band: str | None = None
    answer_version: str | None = None
    predicted: str | None = None  # what the visitor's page claimed the model said: a claim
    band: str | None = None  # the band the visitor's page claimed
    observation: str | None = None  # the server's id of the photos of one plant this one came with
    decision: Decision | None = None

    @property
    def model_version(self) -> str | None:
        """The version that gave the server's answer."""
        return self.answer_version

    @property
    def proposed(self) -> str | None:
        """What one key accepts: ``not_a_flower`` when the server saw no flower; else the visitors'
        most voted species; else their agreement that it is no flower; else the server's species."""
        if self.answer_band == NOT_A_FLOWER:
            return NOT_A_FLOWER
        named = [(n, label) for label, n in self.votes.items() if label and label != NOT_A_FLOWER]
        if named:
            return max(named)[1]
        if self.votes.get(NOT_A_FLOWER):
            return NOT_A_FLOWER
        return self.answer_species


def build(files: list[tuple[str, bytes]]) -> dict[str, QueueItem]:
    """Every photo of the inbox's record and decision files, by sha256."""
    items: dict[str, QueueItem] = {}
    voters: dict[str, dict[str, str]] = {}
    made: list[Decision] = []
    for name, data in files:
        text = data.decode("utf-8", errors="replace")
        if name.startswith(f"{decisions.DECISIONS}/"):
            decision = decisions.parse(text)
            if decision is not None:
                made.append(decision)
            continue
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("kind") != "photos" or not isinstance(record.get("sha256"), str):
            continue
        sha = record["sha256"].lower()
        item = items.setdefault(sha, QueueItem(sha, str(record.get("time", ""))))
        item.received = min(item.received, str(record.get("time", ""))) or item.received
        label, voter = record.get("label"), record.get("voter")
        who = voter if isinstance(voter, str) else name  # records without a voter count once each
        voters.setdefault(sha, {})[who] = label if isinstance(label, str) else ""  # one voter, one (latest) vote
        for key in ("answer_species", "answer_band", "answer_version", "predicted", "band"):
            value = record.get(key)
            if isinstance(value, str) and value and getattr(item, key) is None:
                setattr(item, key, value[:100])
        observation = record.get("observation_id")
        if isinstance(observation, str) and observation and item.observation is None:
            item.observation = observation[:64]
    for sha, by_voter in voters.items():
        items[sha].votes = Counter(by_voter.values())
    for sha, decision in decisions.latest(made).items():
        if sha in items:
            items[sha].decision = decision
    return items


def ordered(items: list[QueueItem]) -> list[QueueItem]:
    """Doubtful answers first by the server's band ("possible", then not recognised, ...; records
    from before the server answered last), oldest first within a band; the photos of one plant
    (one observation) together, where its first photo falls."""
    first = sorted(items, key=lambda i: (BAND_ORDER.get(i.answer_band or "", 4), i.received))
    place: dict[str, int] = {}
    for n, item in enumerate(first):
        place.setdefault(item.observation or item.sha256, n)
    return sorted(first, key=lambda i: (place[i.observation or i.sha256], i.received))


def plants(items: list[QueueItem]) -> dict[str, list[str]]:
    """Observation id -> the sha256s of its photos among ``items``, in queue order."""
    out: dict[str, list[str]] = {}
    for item in items:
        if item.observation:
            out.setdefault(item.observation, []).append(item.sha256)
    return out
