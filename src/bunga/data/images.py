"""Finding, labelling and validating photos for the merge."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bunga.files import atomic_write_text
from bunga.imaging import IMAGE_SUFFIXES, REFUSED_SUFFIXES, ImageRejected, PhotoInfo, load_photo
from bunga.schemas import NOT_A_FLOWER, OTHER_FLOWERS, RESERVED_IDS, normalise

# Folders whose name is not a label: photos directly inside them wait for a curator.
UNLABELLED_FOLDERS = frozenset(
    {
        "inbox",
        "unlabelled",
        "unlabeled",
        "review",
        "feedback",
        "uploads",
        "unknown",
        "tidak_diketahui",
        "photos",
        "photo",
        "foto",
        "images",
        "gambar",
        "tanpa_label",
    }
)


@dataclass(frozen=True)
class PhotoFile:
    """A photo found on disk with the label its location gives it (None: needs review)."""

    path: Path
    source: str
    sha256: str
    label: str | None


@dataclass(frozen=True)
class CheckedPhoto:
    """A photo after validation: info when it is acceptable, otherwise the reason."""

    photo: PhotoFile
    info: PhotoInfo | None
    reason: str | None


ATTRIBUTION_FILE = "ATTRIBUTION.md"
# A row of an attribution table: | `file` | ... https://link ... | licence | ...
_CREDIT_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*(https?://\S+?)\s*\|\s*([^|]+?)\s*\|")


def read_attribution(path: Path, folder: str) -> dict[str, tuple[str, str]]:
    """Credits from an ``ATTRIBUTION.md`` table: photo path (relative to the data folder, like a
    photo's source) -> (licence, link). Rows that do not fit the table's shape are ignored."""
    prefix = f"{folder}/" if folder not in ("", ".") else ""
    credits = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _CREDIT_ROW.match(line)
        if match:
            credits[prefix + match.group(1)] = (match.group(3), match.group(2))
    return credits


Vote = tuple[str | None, str | None]  # (label or None for "I don't know", voter pseudonym or None)


def read_feedback_record(path: Path) -> tuple[str, Vote, str] | None:
    """(sha256, (label or None, voter or None), observation id or "") from a feedback metadata record;
    None when the JSON is not one."""
    try:
        record = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str) or "label" not in record:
        return None
    label, voter = record["label"], record.get("voter")
    vote = (
        normalise(label) if isinstance(label, str) and label.strip() else None,
        voter if isinstance(voter, str) else None,
    )
    observation = record.get("observation_id")
    return record["sha256"].lower(), vote, observation if isinstance(observation, str) else ""


def folder_label(path: Path, root: Path) -> str | None:
    """The label a photo's parent folder gives it, or None for inbox-like folders and the root."""
    parent = path.parent
    if parent == root or normalise(parent.name) in UNLABELLED_FOLDERS:
        return None
    return normalise(parent.name) or None


def iter_files(root: Path, skip: Iterable[Path] = ()) -> Iterator[Path]:
    """Every regular file under ``root`` in sorted order, skipping hidden names and ``skip`` trees."""
    skipped = [s.resolve() for s in skip]
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.is_symlink() or not path.is_file():
            continue
        if any(path.resolve().is_relative_to(s) for s in skipped):
            continue
        yield path


def is_photo_name(path: Path) -> bool:
    """True for files the photo path looks at (accepted and refused image suffixes)."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in REFUSED_SUFFIXES


@dataclass(frozen=True)
class VoteRule:
    """When visitors' votes label a photo by themselves: agreeing votes from at least ``min_votes``
    different voters, none disagreeing, for a label in ``known`` (None: any label). Otherwise a
    curator decides. A vote without a voter pseudonym counts as its own voter. Agreeing votes for
    ``not_a_flower`` give that label, which the merge turns into a rejection, never a class."""

    min_votes: int = 2
    known: frozenset[str] | None = None

    def label(self, votes: list[Vote]) -> str | None:
        """The label the votes give, or None (the photo waits for review)."""
        ballot = [(label, voter or f"#{i}") for i, (label, voter) in enumerate(votes) if label]
        labels = {label for label, _ in ballot}
        if len(labels) != 1 or len({voter for _, voter in ballot}) < self.min_votes:
            return None
        label = labels.pop()
        return label if self.known is None or label in self.known or label == NOT_A_FLOWER else None


def find_photo(
    path: Path,
    sha: str,
    root: Path,
    source: str,
    curated: dict[str, str],
    votes: dict[str, list[Vote]],
    rule: VoteRule = VoteRule(),
) -> PhotoFile:
    """Work out a photo's label: a curator's sheet first, then visitors' feedback when enough votes
    agree on a known species (otherwise review), then its folder."""
    label = folder_label(path, root)
    if sha in votes:
        label = rule.label(votes[sha])
    return PhotoFile(path=path, source=source, sha256=sha, label=curated.get(sha, label))


class CheckCache:
    """Photos that passed validation, by sha256, under the limits and the Pillow version that checked
    them: a merge decodes only photos it has not validated before. The sha256 is computed afresh from
    each file, so an entry always describes the very bytes on disk. A missing or unreadable cache file
    only means re-checking."""

    def __init__(self, folder: Path, max_pixels: int, min_side: int) -> None:
        import PIL

        self.path = folder / f"photo-checks-{max_pixels}-{min_side}-pillow{PIL.__version__}.json"
        self.known: dict[str, PhotoInfo] = {}
        self.added = 0
        try:
            for sha, (fmt, width, height) in json.loads(self.path.read_text(encoding="utf-8")).items():
                self.known[sha] = PhotoInfo(str(fmt), int(width), int(height))
        except (OSError, ValueError, TypeError, AttributeError):
            self.known = {}

    def save(self) -> None:
        """Write the entries atomically (only when the merge validated new photos)."""
        if self.added:
            table = {sha: [i.format, i.width, i.height] for sha, i in sorted(self.known.items())}
            atomic_write_text(self.path, json.dumps(table, separators=(",", ":")))


def check_photo(photo: PhotoFile, max_pixels: int, min_side: int, cache: CheckCache | None = None) -> CheckedPhoto:
    """Validate a photo fully (suffix allow-list, decodes, pixel limit, minimum size), or take the
    result from ``cache`` when these bytes passed before."""
    if photo.path.suffix.lower() in REFUSED_SUFFIXES:
        return CheckedPhoto(photo, None, f"{photo.path.suffix.lower()} files are not accepted (JPEG, PNG or WebP)")
    if cache is not None and photo.sha256 in cache.known:
        return CheckedPhoto(photo, cache.known[photo.sha256], None)
    try:
        _, info = load_photo(photo.path, max_pixels=max_pixels, min_side=min_side)
    except ImageRejected as err:
        return CheckedPhoto(photo, None, str(err))
    if cache is not None:
        cache.known[photo.sha256] = info
        cache.added += 1
    return CheckedPhoto(photo, info, None)


def reserved_reason(photo: PhotoFile, voted: bool) -> str | None:
    """Why a photo whose label is a decision word stays out of the dataset (None for a class label):
    visitors who agreed it is no flower, or a folder named after a decision (``other_flowers`` is the
    one reserved id that is a class: the pool of species the garden does not name)."""
    label = photo.label
    if label is None or label not in RESERVED_IDS or label == OTHER_FLOWERS:
        return None
    if label == NOT_A_FLOWER and voted:
        return "visitors agreed: not a flower"
    return f"its label {label!r} is a decision word, not a species (folder {photo.source.rsplit('/', 1)[0]!r})"
