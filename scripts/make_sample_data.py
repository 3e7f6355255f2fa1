"""Regenerate the shipped sample sheets in collected_data/ from scikit-learn's copy of Fisher's Iris.

Run once by the maintainers (`python scripts/make_sample_data.py`); the sheets are committed.
The problems in them are deliberate and listed in collected_data/README.md.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sklearn.datasets import load_iris

OUT = Path(__file__).resolve().parent.parent / "collected_data"


def main() -> None:
    iris = load_iris()
    names = ["setosa", "versicolor", "virginica"]
    rows = [
        (f"ITR-{i + 1:03d}", *map(float, x), names[y])
        for i, (x, y) in enumerate(zip(iris.data, iris.target, strict=True))
    ]
    # Sheet A: Indonesian headers, cm, comma-separated, "Iris-setosa" spelling. Flowers 1-55.
    with (OUT / "pengamat_a_2024.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["no_spesimen", "panjang_sepal", "lebar_sepal", "panjang_petal", "lebar_petal", "spesies"])
        for sid, a, b, c, d, sp in rows[:55]:
            w.writerow([sid, a, b, c, d, f"Iris-{sp}"])
    # Sheet B: English headers in millimetres, " setosa" spelling, flowers 56-105,
    # plus flower ITR-010 again (also in sheet A) and one impossible value (ITR-077).
    with (OUT / "field_team_b_mm.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            [
                "specimen_id",
                "sepal_length_mm",
                "sepal_width_mm",
                "petal_length_mm",
                "petal_width_mm",
                "species",
            ]
        )
        for sid, a, b, c, d, sp in [*rows[55:105], rows[9]]:
            mm = [round(v * 10) for v in (a, b, c, d)]
            if sid == "ITR-077":
                mm[0] = 6800  # typed 6800 mm: a 6.8 m sepal
            w.writerow([sid, *mm, f" {sp}"])
    # Sheet C: semicolons, decimal commas, upper-case species, two missing values. Flowers 106-150.
    with (OUT / "catatan_lapangan_c.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=";", lineterminator="\n")
        w.writerow(
            [
                "No Spesimen",
                "Panjang Sepal (cm)",
                "Lebar Sepal (cm)",
                "Panjang Petal (cm)",
                "Lebar Petal (cm)",
                "Spesies",
            ]
        )
        for sid, a, b, c, d, sp in rows[105:]:
            cells = [f"{v:.1f}".replace(".", ",") for v in (a, b, c, d)]
            if sid in {"ITR-118", "ITR-131"}:
                cells[3 if sid == "ITR-118" else 1] = ""
            w.writerow([sid, *cells, sp.upper()])


if __name__ == "__main__":
    main()
