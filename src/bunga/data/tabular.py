"""Reading measurement sheets as collectors write them: header aliases, units, decimal commas."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from bunga.errors import BungaError
from bunga.schemas import FEATURES, normalise

REQUIRED = ("specimen_id", *FEATURES, "species")
_UNIT = re.compile(r"^(?P<base>.*?)[_\s]*[\(\[]?(?P<unit>mm|cm)[\)\]]?$")
_MISSING = {"", "na", "n/a", "nan", "null", "none", "-", "?", "--"}
_DELIMITERS = (",", ";", "\t", "|")
_SNIFF_BYTES = 65536
BLANK = "blank line"


class SheetError(BungaError):
    """A whole file cannot be read as a measurement sheet; the message says why."""


@dataclass(frozen=True)
class AliasBook:
    """Header and species spellings mapped to canonical names."""

    columns: dict[str, str]
    species: dict[str, str]


@dataclass(frozen=True)
class Row:
    """One valid measurement row (lengths in cm; ``None`` where missing and imputation is on)."""

    source: str
    line: int
    specimen_id: str
    values: tuple[float | None, float | None, float | None, float | None]
    species: str


@dataclass(frozen=True)
class Rejected:
    """One row that could not be kept, with the reason."""

    source: str
    line: int
    reason: str
    specimen_id: str = ""


def load_aliases(classes: list[str], extra: Path | None = None) -> AliasBook:
    """The shipped alias book, extended by ``extra`` (same YAML shape), for the given classes."""
    shipped = resources.files("bunga.resources").joinpath("column_aliases.yaml").read_text("utf-8")
    books = [yaml.safe_load(shipped)]
    if extra is not None:
        if not extra.is_file():
            raise SheetError(f"aliases file {extra} does not exist")
        books.append(yaml.safe_load(extra.read_text("utf-8")) or {})
    columns: dict[str, str] = {}
    species: dict[str, str] = {c: c for c in classes}
    for book in books:
        for canonical, names in (book.get("columns") or {}).items():
            for name in [canonical, *names]:
                columns[normalise(str(name))] = canonical
        for label, names in (book.get("species") or {}).items():
            if label in classes:
                for name in [label, *names]:
                    species[normalise(str(name))] = label
    return AliasBook(columns=columns, species=species)


def parse_header(header: str, book: AliasBook) -> tuple[str | None, float]:
    """Map one header cell to its canonical column and the factor that converts it to cm."""
    name = normalise(header.lstrip("\ufeff"))
    if name in book.columns:
        return book.columns[name], 1.0
    match = _UNIT.match(name)
    if match and normalise(match["base"]) in book.columns:
        return book.columns[normalise(match["base"])], 0.1 if match["unit"] == "mm" else 1.0
    return None, 1.0


def normalise_species(raw: str, book: AliasBook) -> str | None:
    """The class id for a species spelling, or None when it is not a known species."""
    name = normalise(raw)
    if name in book.species:
        return book.species[name]
    if name.startswith("iris_") and name[5:] in book.species:
        return book.species[name[5:]]
    return None


def parse_number(raw: str) -> float | None:
    """A number written with a decimal point or comma; None when the cell is empty or NA."""
    text = raw.strip().replace("\u00a0", "").replace(" ", "")
    if text.lower() in _MISSING:
        return None
    if "," in text and "." not in text:
        text = text.replace(",", ".")
    return float(text)


def _sniff(path: Path) -> tuple[str, str]:
    """The text encoding and delimiter of a sheet; raises SheetError for binary files."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if not head.strip():
        raise SheetError("empty file")
    if b"\x00" in head:
        raise SheetError("binary file, not a CSV sheet")
    try:
        head.decode("utf-8-sig")
        encoding = "utf-8-sig"
    except UnicodeDecodeError as err:
        # a multi-byte character cut by the sniff window is not a reason to leave UTF-8
        encoding = "cp1252" if err.start < len(head) - 4 else "utf-8-sig"
    first = head.decode(encoding, errors="replace").splitlines()[0]
    delimiter = max(_DELIMITERS, key=first.count)
    return encoding, delimiter


class SheetReader:
    """Reads one CSV sheet into valid rows and rejections, streaming."""

    def __init__(self, book: AliasBook, max_cm: float, impute: bool) -> None:
        self.book = book
        self.max_cm = max_cm
        self.impute = impute

    def read(self, path: Path, source: str) -> Iterator[Row | Rejected]:
        """Yield every data line of the sheet as a Row or a Rejected; raises SheetError."""
        encoding, delimiter = _sniff(path)
        with path.open(encoding=encoding, errors="replace", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise SheetError("empty file")
            mapping = [parse_header(cell, self.book) for cell in header]
            found = {name for name, _ in mapping if name}
            if not found & set(REQUIRED):
                raise SheetError(
                    "no recognisable columns (expected e.g. specimen_id, sepal_length, ..., species; "
                    "add aliases with BUNGA_ALIASES_FILE)"
                )
            lacking = [c for c in REQUIRED if c not in found]
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    yield Rejected(source, reader.line_num, BLANK)
                    continue
                if lacking:
                    yield Rejected(source, reader.line_num, f"sheet has no column {', '.join(lacking)}")
                    continue
                yield self._row(cells, mapping, source, reader.line_num, len(header))

    def _row(
        self, cells: list[str], mapping: list[tuple[str | None, float]], source: str, line: int, width: int
    ) -> Row | Rejected:
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            return Rejected(source, line, f"{len(cells)} fields but the header has {width}")
        fields: dict[str, str] = {}
        factors: dict[str, float] = {}
        for (name, factor), cell in zip(mapping, cells, strict=False):
            if name and name not in fields:
                fields[name], factors[name] = cell, factor
        specimen = fields.get("specimen_id", "").strip()
        if not specimen:
            return Rejected(source, line, "missing specimen id")
        values: list[float | None] = []
        problems: list[str] = []
        for feature in FEATURES:
            raw = fields.get(feature, "")
            try:
                number = parse_number(raw)
            except ValueError:
                problems.append(f"{feature} {raw.strip()!r} is not a number")
                continue
            if number is None:
                if not self.impute:
                    problems.append(f"{feature} is missing")
                values.append(None)
                continue
            cm = round(number * factors[feature], 6)
            if not math.isfinite(cm) or cm <= 0 or cm > self.max_cm:
                problems.append(f"{feature} = {cm:g} cm is impossible (must be > 0 and <= {self.max_cm:g})")
            values.append(cm)
        raw_species = fields.get("species", "")
        species = normalise_species(raw_species, self.book)
        if not raw_species.strip():
            problems.append("species is missing")
        elif species is None:
            known = ", ".join(sorted(set(self.book.species.values())))
            problems.append(f"unknown species {raw_species.strip()!r} (known: {known})")
        if problems:
            return Rejected(source, line, "; ".join(problems), specimen)
        if all(v is None for v in values):
            return Rejected(source, line, "no measurement at all", specimen)
        assert species is not None
        return Row(source, line, specimen, (values[0], values[1], values[2], values[3]), species)
