"""What every ``bunga`` command shares: the Typer app, consoles, the error wrapper, settings, the
kind option, the training config and the tracker."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from bunga.config import DATA_KINDS, DataKind, Settings, get_settings
from bunga.errors import BungaError

if TYPE_CHECKING:
    from bunga.tracking import Tracker
    from bunga.training.train import TrainConfig

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
            if err.title == "Settings" and len(first["loc"]) == 1:
                where = f"BUNGA_{where.upper()}"  # the variable the user set
            err_console.print(
                f"[red]error:[/red] invalid setting {where}: {first['msg']}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as err:  # never a traceback for users; BUNGA_DEBUG=1 shows it
            if os.environ.get("BUNGA_DEBUG"):
                raise
            message = str(err).splitlines()[0] if str(err) else ""
            err_console.print(
                f"[red]unexpected error:[/red] {type(err).__name__}: {message[:300]} "
                "(set BUNGA_DEBUG=1 for the traceback)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def settings() -> Settings:
    """The settings, read when a command runs (not at import)."""
    return get_settings()


KindOption = Annotated[
    str, typer.Option("--kind", "-k", help="measurements, photos, or all (the kinds the dataset has)")
]


def resolve_kinds(kind: str, dataset_dir: Path) -> list[DataKind]:
    from bunga.data.merge import load_manifest

    if kind in DATA_KINDS:
        return [kind]
    if kind != "all":
        raise BungaError(f"--kind takes measurements, photos or all, not {kind!r}", 2)
    manifest = load_manifest(dataset_dir)
    if manifest is None:
        raise BungaError(f"{dataset_dir}/manifest.json not found: run `bunga merge` first")
    kinds: list[DataKind] = []
    if manifest.rows_kept:
        kinds.append("measurements")
    if manifest.images_kept:
        kinds.append("photos")
    if not kinds:
        raise BungaError(f"{dataset_dir} holds no measurements and no labelled photos: nothing to train")
    return kinds


def train_config(kind: DataKind, **overrides: Any) -> TrainConfig:
    from bunga.training.train import TrainConfig

    s = settings()
    return TrainConfig(
        kind=kind,
        dataset_dir=s.dataset_dir,
        experiment=s.experiment(kind),
        model_name=s.model_name(kind),
        seed=s.seed,
        test_size=s.test_size,
        cv_folds=s.cv_folds,
        min_f1=s.gate_min_f1(kind),
        tolerance=s.gate_tolerance,
        cache_dir=s.cache_dir,
        batch_size=s.image_batch_size,
        max_pixels=s.image_max_pixels,
        abstain_max_refused=s.abstain_max_refused,
        not_flower_max_refused=s.not_flower_max_refused,
        sure_precision=s.sure_precision,
        backbone=s.backbone,
        **overrides,
    )


def open_tracker() -> Tracker:
    from bunga.tracking import Tracker

    s = settings()
    return Tracker(s.mlflow_tracking_uri, s.artifact_dir)


def say(message: str) -> None:
    """A progress line on stderr."""
    err_console.print(f"[dim]{message}[/dim]", highlight=False)


def who_am_i() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
