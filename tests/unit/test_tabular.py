"""Reading sheets: headers, units, numbers, species spellings, row-level rejections."""

from __future__ import annotations

from pathlib import Path

import pytest

from bunga.data.tabular import (
    Rejected,
    Row,
    SheetError,
    SheetReader,
    load_aliases,
    parse_header,
    parse_number,
)

CLASSES = ["setosa", "versicolor", "virginica"]
BOOK = load_aliases(CLASSES)


@pytest.mark.parametrize(
    ("header", "canonical", "factor"),
    [
        ("sepal_length", "sepal_length", 1.0),
        ("Panjang Sepal (cm)", "sepal_length", 1.0),
        ("sepal_length_mm", "sepal_length", 0.1),
        ("lebar_petal [mm]", "petal_width", 0.1),
        ("\ufeffno_spesimen", "specimen_id", 1.0),
        ("Spesies", "species", 1.0),
        ("colour", None, 1.0),
    ],
)
def test_headers_map_to_canonical_columns_and_units(header: str, canonical: str | None, factor: float) -> None:
    assert parse_header(header, BOOK) == (canonical, factor)


@pytest.mark.parametrize(("raw", "value"), [("5.1", 5.1), ("5,1", 5.1), (" 7 ", 7.0), ("", None), ("NA", None)])
def test_numbers_accept_decimal_commas_and_missing_markers(raw: str, value: float | None) -> None:
    assert parse_number(raw) == value


def test_parse_number_refuses_text() -> None:
    with pytest.raises(ValueError):
        parse_number("lima")


def _read(tmp_path: Path, text: str, impute: bool = False, encoding: str = "utf-8") -> list[Row | Rejected]:
    path = tmp_path / "sheet.csv"
    path.write_bytes(text.encode(encoding))
    return list(SheetReader(BOOK, 50.0, impute).read(path, "sheet.csv"))


def test_species_spellings_normalise(tmp_path: Path) -> None:
    rows = _read(
        tmp_path,
        "id,sl,sw,pl,pw,species\na,5,3,1,0.2,Iris-setosa\nb,5,3,1,0.2, SETOSA\nc,5,3,1,0.2,iris virginica\n",
    )
    assert [r.species for r in rows if isinstance(r, Row)] == ["setosa", "setosa", "virginica"]


def test_unknown_species_is_rejected_with_the_known_list(tmp_path: Path) -> None:
    (row,) = _read(tmp_path, "id,sl,sw,pl,pw,species\na,5,3,1,0.2,rosa\n")
    assert isinstance(row, Rejected)
    assert "unknown species 'rosa'" in row.reason and "setosa" in row.reason


def test_millimetres_are_converted(tmp_path: Path) -> None:
    (row,) = _read(
        tmp_path,
        "specimen_id;sepal_length_mm;sepal_width_mm;petal_length_mm;petal_width_mm;species\nx;51;35;14;2;setosa\n",
    )
    assert isinstance(row, Row)
    assert row.values == (5.1, 3.5, 1.4, 0.2)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("a,-5,3,1,0.2,setosa", "impossible"),
        ("a,500,3,1,0.2,setosa", "impossible"),
        ("a,five,3,1,0.2,setosa", "not a number"),
        ("a,5,3,1,,setosa", "petal_width is missing"),
        (",5,3,1,0.2,setosa", "missing specimen id"),
        ("a,5,3,1,0.2,", "species is missing"),
        ("a,5,3,1,0.2,setosa,extra", "fields but the header has"),
        ("a,nan,3,1,0.2,setosa", "sepal_length is missing"),
        ("a,inf,3,1,0.2,setosa", "impossible"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(tmp_path: Path, line: str, reason: str) -> None:
    (row,) = _read(tmp_path, f"id,sl,sw,pl,pw,species\n{line}\n")
    assert isinstance(row, Rejected)
    assert reason in row.reason
    assert row.line == 2


def test_missing_values_are_kept_when_imputing(tmp_path: Path) -> None:
    (row,) = _read(tmp_path, "id,sl,sw,pl,pw,species\na,5,,1,0.2,setosa\n", impute=True)
    assert isinstance(row, Row)
    assert row.values == (5.0, None, 1.0, 0.2)


def test_bom_and_crlf_are_handled(tmp_path: Path) -> None:
    rows = _read(tmp_path, "\ufeffid,sl,sw,pl,pw,species\r\na,5,3,1,0.2,setosa\r\n")
    assert isinstance(rows[0], Row) and rows[0].specimen_id == "a"


def test_cp1252_sheet_is_read(tmp_path: Path) -> None:
    rows = _read(tmp_path, "id,sl,sw,pl,pw,species\nbunga-é,5,3,1,0.2,setosa\n", encoding="cp1252")
    assert isinstance(rows[0], Row) and rows[0].specimen_id == "bunga-é"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary file"),
        (b"colour,smell\nred,sweet\n", "no recognisable columns"),
    ],
)
def test_unreadable_sheets_raise_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(SheetError, match=message):
        list(SheetReader(BOOK, 50.0, False).read(path, "bad.csv"))


def test_sheet_missing_a_column_rejects_each_row(tmp_path: Path) -> None:
    rows = _read(tmp_path, "id,sl,sw,pl,species\na,5,3,1,setosa\n")
    assert isinstance(rows[0], Rejected) and "no column petal_width" in rows[0].reason


def test_user_aliases_extend_the_shipped_ones(tmp_path: Path) -> None:
    extra = tmp_path / "aliases.yaml"
    extra.write_text("columns:\n  sepal_length: [pjg_kelopak]\nspecies:\n  setosa: [bunga_a]\n")
    book = load_aliases(CLASSES, extra)
    assert parse_header("PJG KELOPAK", book) == ("sepal_length", 1.0)
    assert book.species["bunga_a"] == "setosa"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_every_delimiter_is_detected(tmp_path: Path, delimiter: str) -> None:
    """The same sheet written with each supported delimiter reads to the same rows; decimal commas
    stay numbers wherever the comma is not the delimiter."""
    decimal = "." if delimiter == "," else ","
    lines = [
        ["No Spesimen", "Panjang Sepal (cm)", "Lebar Sepal (cm)", "Panjang Petal (cm)", "Lebar Petal (cm)", "Spesies"],
        ["S1", f"5{decimal}1", f"3{decimal}5", f"1{decimal}4", f"0{decimal}2", "setosa"],
        ["S2", f"6{decimal}3", f"3{decimal}3", f"6{decimal}0", f"2{decimal}5", "Iris-virginica"],
    ]
    rows = _read(tmp_path, "".join(delimiter.join(line) + "\n" for line in lines))
    assert all(isinstance(r, Row) for r in rows), rows
    kept = [r for r in rows if isinstance(r, Row)]
    assert [r.specimen_id for r in kept] == ["S1", "S2"]
    assert [r.species for r in kept] == ["setosa", "virginica"]
    assert [r.values for r in kept] == [(5.1, 3.5, 1.4, 0.2), (6.3, 3.3, 6.0, 2.5)]
