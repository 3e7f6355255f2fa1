"""Interchange with Label Studio, the labelling tool many teams already run: the review queue as a
Label Studio import file (one task per photo, its image a signed, expiring URL that Label Studio can
fetch without a curator token, the proposed species as a pre-annotation) with the labelling
configuration to paste into the project, and Label Studio's JSON export read back as review
decisions (bunga.garden.decisions). Formats as Label Studio documents them: tasks with ``data`` and
``predictions`` (``result`` items of ``type: choices``); exports with ``annotations``."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from bunga.errors import BungaError
from bunga.garden import decisions
from bunga.garden.review_queue import QueueItem
from bunga.schemas import NOT_A_FLOWER, OTHER_FLOWERS, REJECT, RESERVED_IDS, curator_name

FROM_NAME, TO_NAME = "species", "image"
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def signature(key: str, sha256: str, expires: int) -> str:
    """The signature of a photo URL valid until ``expires`` (unix seconds)."""
    return hmac.new(key.encode(), f"{sha256}.{expires}".encode(), hashlib.sha256).hexdigest()


def signed_ok(key: str | None, sha256: str, expires: int | None, given: str | None) -> bool:
    """True when a signed photo URL is genuine and not expired."""
    if not key or expires is None or not given or expires < time.time():
        return False
    return hmac.compare_digest(signature(key, sha256, expires).encode(), given.encode("utf-8", "replace"))


def photo_url(base_url: str, key: str, sha256: str, expires: int) -> str:
    """A photo URL Label Studio can fetch without a token, until ``expires``."""
    return (
        f"{base_url.rstrip('/')}/review/photos/{sha256}?expires={expires}&signature={signature(key, sha256, expires)}"
    )


def labelling_config(species: list[str]) -> str:
    """The Label Studio labelling configuration (XML) for these species plus the two decisions."""
    named = [s for s in dict.fromkeys(species) if s not in RESERVED_IDS]  # a decision word is never a species
    choices = "".join(f"    <Choice value={quoteattr(s)}/>\n" for s in [*named, OTHER_FLOWERS, NOT_A_FLOWER, REJECT])
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
                "band": item.answer_band or "",
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


def _choice(annotation: dict[str, Any], where: str) -> str | None:
    """The species or decision an annotation chose (None: it chose nothing in bunga's control)."""
    results = annotation.get("result") or []
    if not isinstance(results, list):
        raise BungaError(f"{where}: 'result' is not a list")
    for result in results:
        if isinstance(result, dict) and result.get("from_name") == FROM_NAME and result.get("type") == "choices":
            value = result.get("value")
            choices = value.get("choices") if isinstance(value, dict) else None
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise BungaError(f"{where}: 'value.choices' is not a list of names")
            if choices:
                return str(choices[0])
    return None


def _curator(annotation: dict[str, Any], where: str) -> str:
    """``label-studio-<user id>``, under the curator-name rule (a name builds a record's file name)."""
    who = annotation.get("completed_by", "unknown")
    if isinstance(who, dict):  # some exports expand the user
        who = who.get("id", "unknown")
    try:
        return curator_name(f"label-studio-{who}")
    except ValueError:
        raise BungaError(f"{where}: completed_by {str(who)[:40]!r} is not a Label Studio user id") from None


def _annotations(task: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The task's annotations a person completed (not cancelled)."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise BungaError(f"{where}: 'annotations' is not a list of annotations")
    return [a for a in annotations if not a.get("was_cancelled")]


def read_export(path: Path, known: set[str], photos: set[str]) -> list[tuple[str, str]]:
    """(file name, text) of a decision record for each photo of a Label Studio JSON export that a person
    annotated: its latest annotation that was not cancelled, across every copy of its task (a task
    repeated is recorded once). ``known`` are the species a label may name, ``photos`` the sha256s in
    the inbox. BungaError naming the task for anything else: nothing is recorded then."""
    try:
        exported = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BungaError(f"{path} is not a Label Studio JSON export ({type(err).__name__})") from None
    if not isinstance(exported, list):
        raise BungaError(f"{path} is not a Label Studio JSON export (expected a list of tasks)")
    chosen: dict[str, tuple[str, str, str]] = {}  # sha256 -> (when, choice, curator) of its latest annotation
    for number, task in enumerate(exported, start=1):
        if not isinstance(task, dict):
            raise BungaError(f"{path}: task {number} is not an object")
        where = f"{path}: task {str(task.get('id', number))[:40]}"
        data = task.get("data")
        sha = str(data.get("sha256", "") if isinstance(data, dict) else "").lower()
        if not SHA256.match(sha):
            raise BungaError(f"{where} has no sha256 from a bunga export")
        if sha not in photos:
            raise BungaError(f"{where}: photo {sha[:12]}... is not in the inbox (an export of another bunga?)")
        for annotation in _annotations(task, where):
            choice = _choice(annotation, where)
            if choice is None:
                continue
            if choice not in (NOT_A_FLOWER, REJECT, OTHER_FLOWERS) and choice not in known:
                raise BungaError(f"{where} chose {choice[:60]!r}, not a species in the catalogue")
            when = str(annotation.get("updated_at") or annotation.get("created_at") or "")
            if sha not in chosen or when >= chosen[sha][0]:
                chosen[sha] = (when, choice, _curator(annotation, where))
    records = []
    for sha, (_, choice, curator) in sorted(chosen.items()):
        if choice in (NOT_A_FLOWER, REJECT):
            records.append(decisions.record(sha, "not_a_flower" if choice == NOT_A_FLOWER else "reject", None, curator))
        else:
            records.append(decisions.record(sha, "label", choice, curator))
    return records
