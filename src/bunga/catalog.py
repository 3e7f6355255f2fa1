"""The species catalogue: names in Bahasa Indonesia, Latin names, families and descriptions."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from bunga.errors import BungaError


class SpeciesInfo(BaseModel):
    """What a visitor is told about one class."""

    model_config = ConfigDict(extra="forbid")

    id: str
    nama: str
    name: str = ""  # the common name in English, where there is one
    latin: str = ""
    famili: str = ""
    deskripsi: str = ""
    description: str = ""
    known: bool = True
    added: bool = False  # added by a curator (review page or `bunga catalog add`), not in the packaged file


class Catalog:
    """Class id -> SpeciesInfo; unknown ids get a plain entry showing the id."""

    def __init__(self, entries: dict[str, SpeciesInfo]) -> None:
        self.entries = entries

    def get(self, class_id: str) -> SpeciesInfo:
        """The entry for a class, or a stand-in that shows the class id."""
        return self.entries.get(class_id) or SpeciesInfo(id=class_id, nama=class_id.replace("_", " "), known=False)

    def all(self) -> list[SpeciesInfo]:
        """Every entry, sorted by id."""
        return [self.entries[k] for k in sorted(self.entries)]


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate a catalogue file (the shipped one when ``path`` is None)."""
    try:
        if path is None:
            text = resources.files("bunga.resources").joinpath("species.yaml").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        raw = yaml.safe_load(text) or {}
    except (OSError, yaml.YAMLError) as err:
        raise BungaError(f"cannot read the species catalogue {path}: {err}") from err
    if not isinstance(raw, dict):
        raise BungaError(f"species catalogue {path} must map class ids to entries")
    entries: dict[str, SpeciesInfo] = {}
    for class_id, fields in raw.items():
        try:
            entries[str(class_id)] = SpeciesInfo.model_validate({"id": str(class_id), **(fields or {})})
        except (ValidationError, TypeError) as err:
            raise BungaError(f"species catalogue entry {class_id!r} is invalid: {str(err).splitlines()[0]}") from err
    return Catalog(entries)


def dump_catalog(catalog: Catalog) -> str:
    """The catalogue as the YAML ``load_catalog`` reads (sorted by id; ``id`` and ``known`` implied)."""
    body = {info.id: info.model_dump(exclude={"id", "known"}, exclude_defaults=True) for info in catalog.all()}
    for fields in body.values():
        fields.setdefault("nama", "")
    header = "# The species catalogue of this dataset version: the packaged one with curators' edits applied.\n"
    return header + yaml.safe_dump(body, allow_unicode=True, sort_keys=True, width=100)
