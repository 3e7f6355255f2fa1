"""``bunga catalog``: the species catalogue as curators keep it (add a species, list what is in force)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bunga.cli.common import app, console, friendly, settings

if TYPE_CHECKING:
    from bunga.garden.inbox import Inbox

catalog_app = typer.Typer(help="Add species to the catalogue, list it.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


def _inbox() -> Inbox:
    from bunga.garden.inbox import open_inbox

    s = settings()
    return open_inbox(s.inbox_dir, s.inbox_db, s.inbox_max_bytes, s.inbox_max_files)


@catalog_app.command("add")
@friendly
def add(
    species_id: Annotated[str, typer.Argument(help="Class id, e.g. kembang_sepatu (2-60 of a-z, 0-9, '_')")],
    nama: Annotated[str | None, typer.Option(help="Name in Bahasa Indonesia (required for a new species)")] = None,
    name: Annotated[str | None, typer.Option(help="Common name in English")] = None,
    latin: Annotated[str | None, typer.Option(help="Latin name")] = None,
    famili: Annotated[str | None, typer.Option(help="Family, e.g. Malvaceae")] = None,
    deskripsi: Annotated[str | None, typer.Option(help="Description in Bahasa Indonesia")] = None,
    description: Annotated[str | None, typer.Option(help="Description in English")] = None,
    photo: Annotated[Path | None, typer.Option(help="A reference photo (JPEG, PNG or WebP)")] = None,
    curator: Annotated[str | None, typer.Option(help="Who adds it [default: cli-<user>]")] = None,
) -> None:
    """Add a species, or edit one: an edit changes only the fields it gives (the rest, the reference
    photo included, stay as they are); the latest edit wins and the earlier ones are kept. Running
    services show it within seconds, the next merge writes it into the dataset."""
    from bunga.catalog import load_catalog
    from bunga.errors import BungaError
    from bunga.garden import catalog_edits
    from bunga.imaging import ImageRejected, thumbnail_jpeg
    from bunga.schemas import curator_name

    given = {"nama": nama, "name": name, "latin": latin, "famili": famili, "deskripsi": deskripsi}
    given["description"] = description
    fields = {key: value for key, value in given.items() if value is not None}
    jpeg = None
    if photo is not None:
        try:
            jpeg = thumbnail_jpeg(photo, settings().image_max_pixels, 320)
        except (ImageRejected, OSError) as err:
            raise BungaError(f"--photo {photo}: {err}") from None
    try:
        who = curator_name(curator or f"cli-{getpass.getuser()}"[:64])
    except ValueError as err:
        raise BungaError(f"--curator: {err}", 2) from None
    inbox = _inbox()
    base = load_catalog(settings().catalog_file)
    info, name, text = catalog_edits.edit(base, inbox, species_id, fields, jpeg, who)
    inbox.store_catalog_edit(name, text)
    console.print(f"{info.id} ({info.nama}) recorded in the catalogue; run `bunga merge` to put it in the dataset")


@catalog_app.command("list")
@friendly
def show() -> None:
    """Every species in force (id, name, family; tab-separated): the packaged catalogue with curators'
    edits applied."""
    from bunga.catalog import load_catalog
    from bunga.garden import catalog_edits

    catalog = catalog_edits.current(load_catalog(settings().catalog_file), _inbox())
    for info in catalog.all():
        mark = " (added by a curator)" if info.added else ""
        typer.echo(f"{info.id}\t{info.nama}\t{info.famili}{mark}")  # tab-separated, for scripts too
