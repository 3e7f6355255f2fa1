"""The ``bunga`` command line: thin commands that parse, call the library and print a summary."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from bunga.config import Settings, get_settings
from bunga.errors import BungaError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="bunga",
    help="MLOps for the flowers of Kebun Raya ITERA: merge, train, evaluate, promote, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
review_app = typer.Typer(help="Label queued photos without moving files by hand.", no_args_is_help=True)
app.add_typer(review_app, name="review")
console = Console()
err_console = Console(stderr=True)


def friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into one red line on stderr and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except BungaError as err:
            err_console.print(f"[red]error:[/red] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            err_console.print(f"[red]error:[/red] invalid setting {where}: {first['msg']}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def settings() -> Settings:
    """The settings, read when a command runs (not at import)."""
    return get_settings()


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
@app.command()
@friendly
def merge(
    data_dir: Annotated[Path | None, typer.Option(help="Raw data folder [default: collected_data]")] = None,
    dataset_dir: Annotated[Path | None, typer.Option(help="Output folder [default: 'Dataset Bunga']")] = None,
    impute: Annotated[
        str | None, typer.Option(help="'median': keep rows with missing values; training imputes them")
    ] = None,
) -> None:
    """Merge, clean and validate collected_data/ into a versioned dataset, losing no record."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from bunga.data.merge import MergeOptions
    from bunga.data.merge import merge as run_merge
    from bunga.data.tabular import load_aliases

    s = settings()
    policy = impute or s.missing_policy
    if policy not in {"reject", "median"}:
        raise BungaError(f"--impute takes 'median' (or set BUNGA_MISSING_POLICY=reject), not {policy!r}", 2)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task("reading sheets", total=None)
        options = MergeOptions(
            data_dir=data_dir or s.data_dir,
            dataset_dir=dataset_dir or s.dataset_dir,
            aliases=load_aliases(s.tabular_classes, s.aliases_file),
            max_cm=s.max_length_cm,
            impute=policy == "median",
            image_max_pixels=s.image_max_pixels,
            image_min_side=s.image_min_side,
            on_rows=lambda n: progress.update(task, description=f"reading sheets: {n:,} rows"),
        )
        result = run_merge(options)
    for message in result.messages:
        err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)
    print_manifest(result.manifest, options.dataset_dir, result.changed)


def print_manifest(manifest: object, dataset_dir: Path, changed: bool) -> None:
    """The merge's accounting as a table."""
    from bunga.schemas import Manifest

    assert isinstance(manifest, Manifest)
    m = manifest
    table = Table(title=f"Merged into {dataset_dir}/", show_header=True)
    table.add_column("", style="bold")
    table.add_column("read", justify="right")
    table.add_column("kept", justify="right")
    table.add_column("rejected", justify="right")
    table.add_column("duplicate", justify="right")
    table.add_column("queued", justify="right")
    table.add_row("rows", str(m.rows_read), str(m.rows_kept), str(m.rows_rejected), str(m.rows_duplicate), "-")
    table.add_row(
        "photos",
        str(m.images_read),
        str(m.images_kept),
        str(m.images_rejected),
        str(m.images_duplicate),
        str(m.images_queued),
    )
    console.print(table)
    console.print(
        f"rows: {m.rows_read} read = {m.rows_kept} kept + {m.rows_rejected} rejected + "
        f"{m.rows_duplicate} duplicate; photos: {m.images_read} read = {m.images_kept} kept + "
        f"{m.images_rejected} rejected + {m.images_duplicate} duplicate + {m.images_queued} queued",
        highlight=False,
    )
    state = "changed" if changed else "unchanged, nothing new"
    console.print(f"dataset_digest {m.dataset_digest} ({state})", highlight=False)
    if not m.balanced():
        raise BungaError("accounting does not balance: please report this as a bug")


@app.command()
@friendly
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write <class>/*.jpg into")],
    per_class: Annotated[int, typer.Option(min=2, max=10_000, help="Photos per class")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
) -> None:
    """Draw a small synthetic photo set (for demos and tests; no real photos are shipped)."""
    from bunga.data.synthetic import generate

    written = generate(out_dir, per_class=per_class, seed=seed)
    console.print(f"wrote {len(written)} synthetic photos into {out_dir}/", highlight=False)


@review_app.command("export")
@friendly
def review_export(
    out: Annotated[Path, typer.Argument(help="Sheet to write (CSV)")] = Path("review.csv"),
) -> None:
    """Write the queue of unlabelled photos to a sheet with a label column to fill in."""
    from bunga.data.review import export_queue

    count = export_queue(settings().dataset_dir, out)
    console.print(f"{count} photos to label in {out}: fill the label column, then `bunga review import {out}`")


@review_app.command("import")
@friendly
def review_import(
    sheet: Annotated[Path, typer.Argument(help="The filled-in sheet from `bunga review export`")],
) -> None:
    """Record the labels of a filled review sheet as new raw data; the next merge applies them."""
    from bunga.data.review import import_labels

    count, path = import_labels(sheet, settings().data_dir)
    where = f" into {path}" if path else ""
    console.print(f"{count} labels recorded{where}; run `bunga merge` to apply them", highlight=False)


def main() -> None:
    """Console-script entry point."""
    app()
