"""The ``bunga`` command line: thin commands that parse, call the library and print a summary."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from bunga.config import DATA_KINDS, DataKind, Settings, get_settings
from bunga.errors import BungaError, GateRefused

if TYPE_CHECKING:
    from bunga.schemas import EvaluationReport, Manifest
    from bunga.tracking import Tracker
    from bunga.train import Candidate, Decision, TrainConfig

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

    from bunga.catalog import load_catalog
    from bunga.data.images import VoteRule
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
            cache_dir=s.cache_dir,
            votes=VoteRule(s.feedback_min_votes, frozenset(load_catalog(s.catalog_file).entries)),
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
        soft_wrap=True,
    )
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


# --------------------------------------------------------------------------------------------
# training, evaluation, registry
# --------------------------------------------------------------------------------------------
KindOption = Annotated[
    str, typer.Option("--kind", "-k", help="measurements, photos, or all (the kinds the dataset has)")
]


def _kinds(kind: str, dataset_dir: Path) -> list[DataKind]:
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


def _config(kind: DataKind, **overrides: Any) -> TrainConfig:
    from bunga.train import TrainConfig

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
        **overrides,
    )


def _tracker() -> Tracker:
    from bunga.tracking import Tracker

    s = settings()
    return Tracker(s.mlflow_tracking_uri, s.artifact_dir)


def say(message: str) -> None:
    """A progress line on stderr."""
    err_console.print(f"[dim]{message}[/dim]", highlight=False)


def print_report(report: EvaluationReport, title: str) -> None:
    """An evaluation report as two tables."""
    table = Table(title=title)
    for column in ("metric", "macro", "weighted"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    table.add_row("precision", f"{report.precision_macro:.4f}", f"{report.precision_weighted:.4f}")
    table.add_row("recall", f"{report.recall_macro:.4f}", f"{report.recall_weighted:.4f}")
    table.add_row("F1", f"{report.f1_macro:.4f}", f"{report.f1_weighted:.4f}")
    table.add_row("accuracy", f"{report.accuracy:.4f}", "")
    console.print(table)
    per_class = Table(title=f"per class (n={report.n_samples})")
    for column in ("class", "precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="right" if column != "class" else "left")
    for name, m in report.per_class.items():
        per_class.add_row(name, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.support))
    console.print(per_class)


def _train_one(kind: DataKind, **overrides: Any) -> Candidate:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from bunga.train import train_measurements, train_photos

    cfg = _config(kind, **overrides)
    tracker = _tracker()
    if kind == "measurements":
        candidate = train_measurements(cfg, tracker, say)
    else:
        with Progress(
            TextColumn("embedding photos"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task("embed", total=None, rate="")

            def progress(done: int, total: int, rate: float) -> None:
                bar.update(task, completed=done, total=total, rate=f"{rate:.1f} images/s")

            candidate = train_photos(cfg, tracker, say, progress)
    print_report(candidate.report, f"{kind}: {cfg.model_name} v{candidate.version} on the test split")
    return candidate


@app.command()
@friendly
def train(
    kind: KindOption = "all",
    model: Annotated[
        str | None, typer.Option(help="Measurements: logreg, random_forest or svm [default: best by cross-validation]")
    ] = None,
    tta: Annotated[bool, typer.Option(help="Photos: average embeddings of the photo and its mirror")] = False,
    shuffle_labels: Annotated[bool, typer.Option(hidden=True, help="Drill: train on shuffled labels")] = False,
) -> None:
    """Train, evaluate and log a candidate per kind; register it with alias 'challenger'."""
    for k in _kinds(kind, settings().dataset_dir):
        extra: dict[str, Any] = {"shuffle_labels": shuffle_labels}
        if k == "measurements" and model:
            from bunga.models.tabular import CANDIDATES

            if model not in CANDIDATES:
                raise BungaError(f"--model takes one of {', '.join(CANDIDATES)}, not {model!r}", 2)
            extra["model_family"] = model
        if k == "photos":
            extra["tta"] = tta
        _train_one(k, **extra)


@app.command()
@friendly
def tune(
    trials: Annotated[int, typer.Option(min=1, max=10_000, help="Optuna trials")] = 20,
) -> None:
    """Search measurement-model hyperparameters with Optuna (each trial a nested MLflow run)."""
    _train_one("measurements", tune_trials=trials)


@app.command("evaluate")
@friendly
def evaluate_cmd(
    kind: Annotated[str, typer.Option("--kind", "-k", help="measurements or photos")] = "measurements",
    model: Annotated[str, typer.Option(help="Alias (champion, challenger, previous) or version number")] = "champion",
    data: Annotated[
        Path | None,
        typer.Option(
            help="Labelled photo folder (<class>/<photo>) or measurement sheet [default: the dataset's test split]"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout")] = False,
) -> None:
    """Evaluate a registered model version on the test split or on any labelled data."""
    from bunga.data.dataset import measurement_sheet, photo_folder
    from bunga.data.tabular import load_aliases
    from bunga.train import current_test_set, evaluate_version, fetch

    if kind not in DATA_KINDS:
        raise BungaError(f"--kind takes measurements or photos, not {kind!r}", 2)
    cfg = _config(kind)
    s = settings()
    fetched = fetch(_tracker(), cfg.model_name, model, cfg.cache_dir)
    if fetched is None:
        raise BungaError(f"{cfg.model_name}@{model} does not exist: see `bunga history --kind {kind}`")
    predictor, version = fetched
    if data is None:
        labelled: Any = current_test_set(cfg.kind, cfg.dataset_dir, cfg.test_size, cfg.seed)
    elif data.is_dir():
        labelled = photo_folder(data)
    else:
        labelled = measurement_sheet(data, load_aliases(s.tabular_classes, s.aliases_file), s.max_length_cm)
    report = evaluate_version(predictor, labelled, cfg.max_pixels, version)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        print_report(report, f"{cfg.model_name} v{version} on {labelled.source}")


def _print_decision(decision: Decision) -> None:
    verdict = "[green]PASSED[/green]" if decision.gate.passed else "[red]REFUSED[/red]"
    console.print(f"{decision.kind}: gate {verdict} for version {decision.version}")
    for reason in decision.gate.reasons:
        console.print(f"  - {reason}", highlight=False)
    if decision.promoted:
        old = f" (previous: v{decision.champion_version})" if decision.champion_version else ""
        console.print(f"  champion -> v{decision.version}{old}")


@app.command("promote")
@friendly
def promote_cmd(
    kind: KindOption = "all",
    version: Annotated[str, typer.Option(help="Alias or version number to promote")] = "challenger",
    dry_run: Annotated[bool, typer.Option(help="Run the gate, move nothing")] = False,
) -> None:
    """Gate a candidate against the champion; on a pass it becomes champion (exit 3 when refused)."""
    from bunga.train import promote

    refused = []
    for k in _kinds(kind, settings().dataset_dir):
        decision = promote(_config(k), _tracker(), version, who=_who(), dry_run=dry_run)
        _print_decision(decision)
        if not decision.gate.passed:
            refused.append(k)
    if refused:
        raise GateRefused(f"the gate refused the {' and '.join(refused)} candidate; the champion did not move")


def _who() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@app.command("rollback")
@friendly
def rollback_cmd(kind: Annotated[str, typer.Option("--kind", "-k", help="measurements or photos")]) -> None:
    """Swap 'champion' and 'previous' (undo the last promotion)."""
    from bunga.train import rollback

    if kind not in DATA_KINDS:
        raise BungaError(f"--kind takes measurements or photos, not {kind!r}", 2)
    champion, previous = rollback(_config(kind), _tracker(), who=_who())
    console.print(f"{kind}: champion -> v{champion}, previous -> v{previous}")


@app.command()
@friendly
def history(kind: KindOption = "all") -> None:
    """Every promotion decision and rollback, oldest first."""
    s = settings()
    kinds = list(DATA_KINDS) if kind == "all" else _kinds(kind, s.dataset_dir)
    tracker = _tracker()
    for k in kinds:
        table = Table(title=f"{s.model_name(k)}: decisions")
        for column in ("when", "action", "version", "result", "F1", "champion", "who"):
            table.add_column(column)
        for item in tracker.history(s.model_name(k)):
            result = (
                "rolled back"
                if item["action"] == "rollback"
                else ("promoted" if item.get("promoted") else ("passed" if item.get("passed") else "refused"))
            )
            f1 = f"{item['candidate_f1']:.4f}" if item.get("candidate_f1") is not None else ""
            champ = item.get("champion_version") or item.get("from_version") or ""
            table.add_row(
                item["when"], item["action"], str(item["version"]), result, f1, str(champ), item.get("who", "")
            )
        console.print(table)


def _retrain_reason(kind: DataKind, digest: str, report: Path) -> str | None:
    """Why a kind needs retraining (no champion, new data, a monitoring alarm), or None."""
    import json

    champion = _tracker().version(settings().model_name(kind), "champion")
    if champion is None:
        return "no champion yet"
    trained_on = champion.tags.get("dataset_digest", "")
    if trained_on != digest:
        return f"the dataset changed since the champion was trained ({trained_on[:12] or '?'} -> {digest[:12]})"
    if report.is_file():
        try:
            alarms = [a for a in json.loads(report.read_text("utf-8")).get("alarms", []) if a.startswith(f"{kind} ")]
        except (ValueError, OSError, AttributeError):
            alarms = []
        if alarms:
            return f"the last monitoring report alarmed: {alarms[0]}"
    return None


@app.command()
@friendly
def pipeline(
    kind: KindOption = "all",
    impute: Annotated[str | None, typer.Option(help="'median' to keep rows with missing values")] = None,
    if_needed: Annotated[
        bool,
        typer.Option(
            "--if-needed",
            help="Retrain a kind only when the dataset changed since its champion was trained or the "
            "last `bunga monitor` report alarmed for it",
        ),
    ] = False,
    report: Annotated[Path, typer.Option(help="The monitoring report --if-needed reads")] = Path(
        "monitoring/monitor-report.json"
    ),
) -> None:
    """merge -> train -> evaluate -> gate -> promote; exits 3 with the reason when the gate refuses."""
    from bunga.data.merge import load_manifest
    from bunga.train import promote

    merge(data_dir=None, dataset_dir=None, impute=impute)
    refused: list[str] = []
    s = settings()
    for k in _kinds(kind, s.dataset_dir):
        if if_needed:
            manifest = load_manifest(s.dataset_dir)
            why = _retrain_reason(k, manifest.dataset_digest if manifest else "", report)
            if why is None:
                console.print(
                    f"{k}: champion is up to date (same dataset, no monitoring alarm): not retrained", soft_wrap=True
                )
                continue
            console.print(f"{k}: retraining: {why}", highlight=False, soft_wrap=True)
        candidate = _train_one(k)
        decision = promote(_config(k), _tracker(), candidate.version, who=_who())
        _print_decision(decision)
        if not decision.gate.passed:
            refused.append(f"{k}: " + "; ".join(r for r in decision.gate.reasons if "below" in r or "worse" in r))
    if refused:
        raise GateRefused("gate refused " + " | ".join(refused))
    console.print("[green]pipeline done[/green]: champions are up to date")


@app.command()
@friendly
def export(
    kind: KindOption = "all",
    model: Annotated[str, typer.Option(help="Alias or version number")] = "champion",
    out: Annotated[Path, typer.Option(help="Folder to write <kind>/model.onnx + bunga.json into")] = Path(
        "bunga-model"
    ),
) -> None:
    """Write registered models to a folder that serving can load without a tracking server."""
    import shutil

    from bunga.bundle import write_card
    from bunga.tracking import validate_ref

    s = settings()
    tracker = _tracker()
    kinds = list(DATA_KINDS) if kind == "all" else _kinds(kind, s.dataset_dir)
    written = 0
    for k in kinds:
        name = s.model_name(k)
        validate_ref(name, model)
        info = tracker.version(name, model)
        if info is None:
            if kind == "all":
                continue
            raise BungaError(f"{name}@{model} does not exist: run `bunga pipeline` first")
        folder = tracker.download_bundle(info.run_id, s.cache_dir / "bundles")
        target = out / k
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(folder, target)
        from bunga.bundle import read_bundle

        card, _ = read_bundle(target)
        write_card(
            target, card.model_copy(update={"version": info.version, "alias": None if model.isdigit() else model})
        )
        console.print(f"{k}: {name} v{info.version} -> {target}/")
        written += 1
    if not written:
        raise BungaError(f"no registered model at {model!r}: run `bunga pipeline` first")


def _profile_lookup(model_dir: Path | None) -> Callable[[str, str, str], Any]:
    """Reference profiles by (kind, model, version): from exported bundles, else from the registry."""
    from bunga.bundle import read_bundle

    s = settings()
    found: dict[tuple[str, str, str], Any] = {}

    def lookup(kind: str, model: str, version: str) -> Any:
        key = (kind, model, version)
        if key not in found:
            found[key] = None
            folder = model_dir / kind if model_dir else None
            if folder is not None and (folder / "bunga.json").is_file():
                card, _ = read_bundle(folder)
                if version in (card.version, card.onnx_sha256[:12]):
                    found[key] = card.profile
            if found[key] is None and version.isdigit():
                tracker = _tracker()
                info = tracker.version(model, version)
                if info is not None:
                    card, _ = read_bundle(tracker.download_bundle(info.run_id, s.cache_dir / "bundles"))
                    found[key] = card.profile
        return found[key]

    return lookup


def _log_monitoring_run(reports: list[Any], json_path: Path, html_path: Path) -> None:
    """One MLflow run per check in the ``bunga-monitoring`` experiment: figures per kind and version,
    the alarms, both reports; linked to each model version by tags."""
    import math
    from datetime import UTC, datetime

    tracker = _tracker()
    with tracker.run("bunga-monitoring", f"monitor-{datetime.now(UTC):%Y%m%d-%H%M%S}") as run:
        tags = {f"model_version.{r.kind}": f"{r.model}/{r.version}" for r in reports}
        run.tags({**tags, "alarms": str(sum(len(r.alarms) for r in reports))})
        for r in reports:
            values = {
                "volume": float(r.volume),
                "recognised_rate": r.recognised_rate,
                "mean_top_prob": r.mean_top_prob,
                "estimated_accuracy": r.estimated_accuracy[0],
                "alarms": float(len(r.alarms)),
                **({"live_accuracy": r.live_accuracy[0]} if r.live_accuracy else {}),
                **{f"psi_{n}": f["psi"] for n, f in r.features.items()},
            }
            run.metrics({f"{r.kind}_v{r.version}_{k}": v for k, v in values.items() if not math.isnan(v)})
        run.file(json_path, "monitoring")
        run.file(html_path, "monitoring")
    console.print("logged to MLflow experiment bunga-monitoring", highlight=False)


@app.command()
@friendly
def monitor(
    last: Annotated[int | None, typer.Option(min=1, help="Only the last N predictions of each version")] = None,
    hours: Annotated[float | None, typer.Option(min=0, help="Only predictions of the last H hours")] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Exported bundles to take reference profiles from")] = None,
    out: Annotated[Path, typer.Option(help="Folder for monitor-report.html and .json")] = Path("monitoring"),
    log_run: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Log the check as a run in MLflow, tagged with each version")
    ] = True,
) -> None:
    """Check served predictions against each model's training profile: volume, class mix, measurement
    drift, confidence, not-recognised rate, live and estimated accuracy. Exit code 4 on an alarm."""
    import time

    from bunga.monitor.checks import Thresholds, Window
    from bunga.monitor.report import write
    from bunga.monitor.run import run_checks

    s = settings()
    window = Window(since=time.time() - hours * 3600 if hours is not None else None, last=last)
    thresholds = Thresholds(psi=s.monitor_psi_alarm, p_value=s.monitor_p_alarm, min_volume=s.monitor_min_volume)
    reports, profiles = run_checks(s.monitor_db, s.inbox_dir, window, thresholds, _profile_lookup(model_dir))
    if not reports:
        raise BungaError(f"no predictions in {s.monitor_db} for that window")
    table = Table(title="Monitoring")
    for column in ("kind", "version", "predictions", "recognised", "est. accuracy", "live accuracy", "alarms"):
        table.add_column(column)
    for r in reports:
        live = f"{r.live_accuracy[0]:.0%} (n={r.live_accuracy[3]})" if r.live_accuracy else "-"
        table.add_row(
            r.kind,
            r.version,
            f"{r.volume:,}",
            f"{r.recognised_rate:.0%}",
            f"{r.estimated_accuracy[0]:.0%}",
            live,
            str(len(r.alarms)),
        )
    console.print(table)
    for r in reports:
        for alarm in r.alarms:
            console.print(f"[red]alarm[/red] {r.kind} v{r.version}: {alarm}", highlight=False, soft_wrap=True)
    json_path, html_path = write(reports, profiles, {"last": last, "hours": hours}, out)
    console.print(f"report: {html_path} (and {json_path.name})", highlight=False)
    if log_run:
        _log_monitoring_run(reports, json_path, html_path)
    if any(r.alarms for r in reports):
        raise typer.Exit(4)


@app.command()
@friendly
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [default: BUNGA_HOST or 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: BUNGA_PORT or 8000]")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes")] = 1,
    model_dir: Annotated[Path | None, typer.Option(help="Serve an exported folder instead of the registry")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request")] = False,
) -> None:
    """Serve the API and the web page (champions from the registry, or an exported folder)."""
    import os

    import uvicorn

    if model_dir is not None:
        if not model_dir.is_dir():
            raise BungaError(f"{model_dir} is not a folder: write one with `bunga export`", 2)
        os.environ["BUNGA_MODEL_DIR"] = str(model_dir.resolve())
        get_settings.cache_clear()
    s = settings()
    console.print(f"serving on http://{host or s.host}:{port or s.port} ({workers} worker(s))", highlight=False)
    uvicorn.run(
        "bunga.serving.app:create_app",
        factory=True,
        host=host or s.host,
        port=port or s.port,
        workers=workers,
        access_log=access_log,
        proxy_headers=False,  # the client address is bunga's rule alone (BUNGA_TRUSTED_PROXIES)
        server_header=False,
        log_level="info",
    )


def main() -> None:
    """Console-script entry point."""
    app()
