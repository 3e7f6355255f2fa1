"""Interchange with Label Studio, the labelling tool many teams already run: the review queue as a
Label Studio import file (one task per photo, its image a signed, expiring URL that Label Studio can
fetch without a curator token, the proposed species as a pre-annotation) with the labelling
configuration to paste into the project, and Label Studio's JSON export read back as review
decisions (bunga.decisions). Formats as Label Studio documents them: tasks with ``data`` and
``predictions`` (``result`` items of ``type: choices``); exports with ``annotations``."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from bunga import decisions
from bunga.errors import BungaError
from bunga.review_queue import QueueItem

FROM_NAME, TO_NAME = "species", "image"
NOT_A_FLOWER, REJECT = "not_a_flower", "reject"  # choices that are decisions, not species


def signature(key: str, sha256: str, expires: int) -> str:
    """The signature of a photo URL valid until ``expires`` (unix seconds)."""
    return hmac.new(key.encode(), f"{sha256}.{expires}".encode(), hashlib.sha256).hexdigest()


def signed_ok(key: str | None, sha256: str, expires: int | None, given: str | None) -> bool:
    """True when a signed photo URL is genuine and not expired."""
    if not key or expires is None or not given or expires < time.time():
        return False
    return hmac.compare_digest(signature(key, sha256, expires), given)


def photo_url(base_url: str, key: str, sha256: str, expires: int) -> str:
    """A photo URL Label Studio can fetch without a token, until ``expires``."""
    return (
        f"{base_url.rstrip('/')}/review/photos/{sha256}?expires={expires}&signature={signature(key, sha256, expires)}"
    )


def labelling_config(species: list[str]) -> str:
    """The Label Studio labelling configuration (XML) for these species plus the two decisions."""
    choices = "".join(f"    <Choice value={quoteattr(s)}/>\n" for s in [*species, NOT_A_FLOWER, REJECT])
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" required="true">\n'
        f"{choices}"
        "  </Choices>\n"
        "</View>\n"
    )


def tasks(items: list[QueueItem], base_url: str, key: str, valid_s: float) -> list[dict[str, Any]]:
    """Label Studio import tasks for undecided photos, with the proposed species pre-annotated."""
    expires = int(time.time() + valid_s)
    out = []
    for item in items:
        task: dict[str, Any] = {
            "data": {
                TO_NAME: photo_url(base_url, key, item.sha256, expires),
                "sha256": item.sha256,
                "band": item.band or "",
                "votes": dict(item.votes),
            }
        }
        if item.proposed:
            result = {
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "type": "choices",
                "value": {"choices": [item.proposed]},
            }
            task["predictions"] = [{"model_version": item.model_version or "", "result": [result]}]
        out.append(task)
    return out


def _choice(annotation: dict[str, Any]) -> str | None:
    for result in annotation.get("result") or []:
        if isinstance(result, dict) and result.get("from_name") == FROM_NAME and result.get("type") == "choices":
            choices = (result.get("value") or {}).get("choices") or []
            if choices and isinstance(choices[0], str):
                return choices[0]
    return None


def read_export(path: Path, known: set[str]) -> list[tuple[str, str]]:
    """(file name, text) of a decision record for each task of a Label Studio JSON export that a person
    annotated (its latest annotation that was not cancelled); BungaError naming the task otherwise."""
    try:
        exported = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BungaError(f"{path} is not a Label Studio JSON export ({type(err).__name__})") from None
    if not isinstance(exported, list):
        raise BungaError(f"{path} is not a Label Studio JSON export (expected a list of tasks)")
    records = []
    for number, task in enumerate(exported, start=1):
        if not isinstance(task, dict):
            raise BungaError(f"{path}: task {number} is not an object")
        sha = str((task.get("data") or {}).get("sha256", "")).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise BungaError(f"{path}: task {task.get('id', number)} has no sha256 from a bunga export")
        done = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not done:
            continue
        annotation = max(done, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
        choice = _choice(annotation)
        if choice is None:
            continue
        if choice in (NOT_A_FLOWER, REJECT):
            decision: decisions.Kind = "not_a_flower" if choice == NOT_A_FLOWER else "reject"
            label = None
        elif choice in known:
            decision, label = "label", choice
        else:
            raise BungaError(f"{path}: task {task.get('id', number)} chose {choice!r}, not a species in the catalogue")
        curator = f"label-studio-{annotation.get('completed_by', 'unknown')}"
        records.append(decisions.record(sha, decision, label, curator))
    return records
