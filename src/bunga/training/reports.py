"""Pictures for evaluation reports: the confusion matrix and a contact sheet of misclassified photos."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from bunga.schemas import EvaluationReport

THUMB = 128


def confusion_png(report: EvaluationReport, path: Path, title: str = "") -> Path:
    """Save the confusion matrix as a PNG heat map with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.classes)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=110)
    matrix = report.confusion_matrix
    ax.imshow(matrix, cmap="Greens")
    ax.set_xticks(range(n), report.classes, rotation=45, ha="right")
    ax.set_yticks(range(n), report.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i in range(n):
        for j in range(n):
            colour = "white" if matrix[i][j] > peak / 2 else "black"
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center", color=colour)
    ax.set_title(title or f"{report.kind}: macro-F1 {report.f1_macro:.3f}, n={report.n_samples}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def contact_sheet(items: Sequence[tuple[Path, str, str]], path: Path, columns: int = 6) -> Path | None:
    """A grid of (photo, true label, predicted label) thumbnails; None when there is nothing to show."""
    if not items:
        return None
    rows = (len(items) + columns - 1) // columns
    caption = 30
    sheet = Image.new("RGB", (columns * THUMB, rows * (THUMB + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (photo, truth, guess) in enumerate(items):
        x, y = (k % columns) * THUMB, (k // columns) * (THUMB + caption)
        try:
            with Image.open(photo) as image:
                thumb = ImageOps.fit(ImageOps.exif_transpose(image).convert("RGB"), (THUMB, THUMB))
        except OSError:
            thumb = Image.new("RGB", (THUMB, THUMB), "grey")
        sheet.paste(thumb, (x, y))
        draw.text((x + 3, y + THUMB + 2), f"true: {truth}"[:22], fill="darkgreen")
        draw.text((x + 3, y + THUMB + 15), f"pred: {guess}"[:22], fill="darkred")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
