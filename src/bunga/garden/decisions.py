"""Curators' decisions on visitors' photos, made on the review page: one record per decision in the
inbox (``feedback/decisions/``), never edited; the latest decision on a photo wins and the earlier
ones stay (an undo is a later decision). ``label`` gives the photo a species; ``not_a_flower`` and
``reject`` keep it out of the dataset (decisions, never labels or classes)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from bunga.schemas import curator_name

DECISIONS = "decisions"
Kind = Literal["label", "not_a_flower", "reject"]
KINDS: tuple[Kind, ...] = ("label", "not_a_flower", "reject")


@dataclass(frozen=True)
class Decision:
    """One curator's decision on one photo."""

    sha256: str
    decision: Kind
    label: str | None
    curator: str
    at_ns: int  # when it was made (orders decisions on the same photo)

    @property
    def rejection(self) -> str | None:
        """Why the merge keeps the photo out, or None when it gives a label."""
        if self.decision == "label":
            return None
        what = "not a flower" if self.decision == "not_a_flower" else "rejected"
        return f"a curator ({self.curator}) decided: {what}"


def record(sha256: str, decision: Kind, label: str | None, curator: str) -> tuple[str, str]:
    """(file name relative to the inbox, text) of a new decision record; the name is built from
    validated parts only (a sha256 and a curator name; ValueError otherwise)."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a photo's sha256: {sha256[:70]!r}")
    curator_name(curator)
    at_ns = time.time_ns()
    body = {
        "kind": "decision",
        "sha256": sha256,
        "decision": decision,
        "label": label if decision == "label" else None,
        "curator": curator,
        "at_ns": at_ns,
        "time": datetime.fromtimestamp(at_ns / 1e9, UTC).isoformat(timespec="microseconds"),
    }
    name = f"{DECISIONS}/{sha256}-{at_ns}-{curator}.json"
    return name, json.dumps(body, sort_keys=True, ensure_ascii=False) + "\n"


def parse(text: str) -> Decision | None:
    """The decision in a record's text; None when it is not one."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("kind") != "decision" or body.get("decision") not in KINDS:
        return None
    sha, label, curator, at_ns = body.get("sha256"), body.get("label"), body.get("curator"), body.get("at_ns")
    if not isinstance(sha, str) or not isinstance(curator, str) or not isinstance(at_ns, int):
        return None
    if body["decision"] == "label" and not (isinstance(label, str) and label):
        return None
    return Decision(sha.lower(), body["decision"], label if body["decision"] == "label" else None, curator, at_ns)


def read(path: Path) -> Decision | None:
    """The decision in a record file; None when the file is not one."""
    try:
        return parse(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def latest(decisions: list[Decision]) -> dict[str, Decision]:
    """The decision in force on each photo: the latest one (ties: the later record name order)."""
    out: dict[str, Decision] = {}
    for decision in sorted(decisions, key=lambda d: (d.at_ns, d.curator)):
        out[decision.sha256] = decision
    return out
