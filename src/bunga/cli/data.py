"""``bunga merge``, ``bunga synth`` and ``bunga review``: raw data in, a versioned dataset out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bunga.cli.common import (
    app,
    console,
    err_console,
    friendly,
    review_app,
    settings,
)
from bunga.errors import BungaError

if TYPE_CHECKING:
    from bunga.schemas import Manifest


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

    from bunga.catalog import load_catalog
    from bunga.data.images import VoteRule
    from bunga.data.merge import MergeOptions
    from bunga.data.merge import merge as run_merge
    from bunga.data.tabular import load_aliases
    from bunga.garden.inbox import export_if_database

    s = settings()
    policy = impute or s.missing_policy
    if policy not in {"reject", "median"}:
        raise BungaError(f"--impute takes 'median' (or set BUNGA_MISSING_POLICY=reject), not {policy!r}", 2)
    exported = export_if_database((data_dir or s.data_dir) / "feedback", s.inbox_db)
    if s.inbox_db:
        console.print(f"feedback database: {exported} new files written into the inbox folder", highlight=False)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task("reading sheets", total=None)
        catalog = load_catalog(s.catalog_file)
        options = MergeOptions(
            data_dir=data_dir or s.data_dir,
            dataset_dir=dataset_dir or s.dataset_dir,
            aliases=load_aliases(s.tabular_classes, s.aliases_file),
            max_cm=s.max_length_cm,
            impute=policy == "median",
            image_max_pixels=s.image_max_pixels,
            image_min_side=s.image_min_side,
            cache_dir=s.cache_dir,
            votes=VoteRule(s.feedback_min_votes, frozenset(catalog.entries)),
            catalog=catalog,
            on_rows=lambda n: progress.update(task, description=f"reading sheets: {n:,} rows"),
        )
        result = run_merge(options)
    for message in result.messages:
        err_console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)
    print_manifest(result.manifest, options.dataset_dir, result.changed)


def print_manifest(m: Manifest, dataset_dir: Path, changed: bool) -> None:
    """The merge's accounting as a table."""
    table = Table(title=f"Merged into {dataset_dir}/", show_header=True)
    table.add_column("", style="bold")
    table.add_column("read", justify="right")
    table.add_column("kept", justify="right")
    table.add_column("rejected", justify="right")
    table.add_column("duplicate", justify="right")
    table.add_column("queued", justify="right")
    table.add_row(
        "rows", str(m.rows_read), str(m.rows_kept), str(m.rows_rejected), str(m.rows_duplicate), str(m.rows_queued)
    )
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
        f"{m.rows_duplicate} duplicate + {m.rows_queued} queued; photos: {m.images_read} read = {m.images_kept} kept + "
        f"{m.images_rejected} rejected + {m.images_duplicate} duplicate + {m.images_queued} queued",
        highlight=False,
        soft_wrap=True,
    )
    if m.species_added:
        added = ", ".join(m.species_added)
        console.print(f"catalogue: species added by curators: {added} (species.yaml)", highlight=False, soft_wrap=True)
    state = "changed" if changed else "unchanged, nothing new"
    console.print(f"dataset_digest {m.dataset_digest} ({state})", highlight=False, soft_wrap=True)
    if not m.balanced():
        raise BungaError("accounting does not balance: please report this as a bug")


@app.command()
@friendly
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write <class>/*.jpg into")],
    per_class: Annotated[int, typer.Option(min=2, max=10_000, help="Photos per class")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
) -> None:
    """Draw a small synthetic photo set for tests and demos (the shipped sample holds the real photos)."""
    from bunga.data.synthetic import generate

    written = generate(out_dir, per_class=per_class, seed=seed)
    console.print(f"wrote {len(written)} synthetic photos into {out_dir}/", highlight=False)


@review_app.command("export")
@friendly
def review_export(
    out: Annotated[Path, typer.Argument(help="Sheet to write (CSV; JSON for label-studio)")] = Path("review.csv"),
    kind: Annotated[
        str,
        typer.Option(help="'photos', 'measurements' (visitors' labelled measurements) or 'label-studio'"),
    ] = "photos",
    base_url: Annotated[
        str | None, typer.Option(help="label-studio: the service's public URL, for the photos' signed links")
    ] = None,
    days: Annotated[float, typer.Option(min=0.01, help="label-studio: how long the photo links stay valid")] = 7.0,
) -> None:
    """Write a review queue to a sheet with a label column to fill in (measurements: a species or 'reject'),
    or the photo queue as a Label Studio import file with its labelling configuration."""
    from bunga.garden.review_sheets import export_measurements, export_queue

    if kind == "label-studio":
        count, config = _export_label_studio(out, base_url, days)
        console.print(
            f"{count} tasks in {out}, labelling configuration in {config}: import both into a Label Studio "
            f"project; export its annotations as JSON, then `bunga review import <export>.json`",
            highlight=False,
            soft_wrap=True,
        )
        return
    if kind not in ("photos", "measurements"):
        raise BungaError(f"--kind {kind!r}: use photos, measurements or label-studio")
    write = export_queue if kind == "photos" else export_measurements
    count = write(settings().dataset_dir, out)
    console.print(f"{count} {kind} to decide in {out}: fill the label column, then `bunga review import {out}`")


def _export_label_studio(out: Path, base_url: str | None, days: float) -> tuple[int, Path]:
    """The undecided visitor photos as Label Studio tasks (``out``) and its labelling config (.xml)."""
    import json

    from bunga.catalog import load_catalog
    from bunga.files import atomic_write_text
    from bunga.garden import catalog_edits, label_studio, review_queue
    from bunga.garden.inbox import open_inbox

    s = settings()
    if not base_url or not s.review_url_key:
        raise BungaError("a Label Studio export needs --base-url and BUNGA_REVIEW_URL_KEY (it signs the photo links)")
    inbox = open_inbox(s.inbox_dir, s.inbox_db, s.inbox_max_bytes, s.inbox_max_files)
    files = inbox.review_files()
    undecided = [i for i in review_queue.ordered(list(review_queue.build(files).values())) if i.decision is None]
    tasks = label_studio.tasks(undecided, base_url, s.review_url_key, days * 86400)
    atomic_write_text(out, json.dumps(tasks, indent=2, ensure_ascii=False) + "\n")
    config = out.with_suffix(".xml")
    in_force = catalog_edits.current(load_catalog(s.catalog_file), inbox)  # curators' new species too
    atomic_write_text(config, label_studio.labelling_config(sorted(in_force.entries)))
    return len(tasks), config


@review_app.command("import")
@friendly
def review_import(
    sheet: Annotated[Path, typer.Argument(help="The filled-in sheet from `bunga review export`")],
) -> None:
    """Record the labels of a filled review sheet as new raw data (or a Label Studio JSON export as review
    decisions); the next merge applies them."""
    from bunga.garden.review_sheets import import_labels

    if sheet.suffix.lower() == ".json":
        from bunga.catalog import load_catalog
        from bunga.garden import catalog_edits, label_studio, review_queue
        from bunga.garden.inbox import open_inbox

        s = settings()
        inbox = open_inbox(s.inbox_dir, s.inbox_db, s.inbox_max_bytes, s.inbox_max_files)
        in_force = catalog_edits.current(load_catalog(s.catalog_file), inbox)
        photos = set(review_queue.build(inbox.review_files()))
        records = label_studio.read_export(sheet, set(in_force.entries), photos)
        for name, text in records:
            inbox.store_decision(name, text)
        console.print(f"{len(records)} decisions recorded from Label Studio; run `bunga merge` to apply them")
        return
    count, path = import_labels(sheet, settings().data_dir)
    where = f" into {path}" if path else ""
    console.print(f"{count} labels recorded{where}; run `bunga merge` to apply them", highlight=False)
