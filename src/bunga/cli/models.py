"""Training, evaluation and the registry: ``train``, ``tune``, ``evaluate``, ``promote``, ``rollback``,
``history``, ``pipeline`` and ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from bunga.cli.common import (
    KindOption,
    app,
    console,
    err_console,
    friendly,
    open_tracker,
    resolve_kinds,
    say,
    settings,
    train_config,
    who_am_i,
)
from bunga.cli.data import merge
from bunga.config import DATA_KINDS, DataKind
from bunga.errors import BungaError, GateRefused

if TYPE_CHECKING:
    from bunga.schemas import EvaluationReport
    from bunga.training.promotion import Decision
    from bunga.training.train import Candidate


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


def train_one(kind: DataKind, **overrides: Any) -> Candidate:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from bunga.training.photos import train_photos
    from bunga.training.train import train_measurements

    cfg = train_config(kind, **overrides)
    tracker = open_tracker()
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
    for k in resolve_kinds(kind, settings().dataset_dir):
        extra: dict[str, Any] = {"shuffle_labels": shuffle_labels}
        if k == "measurements" and model:
            from bunga.models.tabular import CANDIDATES

            if model not in CANDIDATES:
                raise BungaError(f"--model takes one of {', '.join(CANDIDATES)}, not {model!r}", 2)
            extra["model_family"] = model
        if k == "photos":
            extra["tta"] = tta
        train_one(k, **extra)


@app.command()
@friendly
def tune(
    trials: Annotated[int, typer.Option(min=1, max=10_000, help="Optuna trials")] = 20,
) -> None:
    """Search measurement-model hyperparameters with Optuna (each trial a nested MLflow run)."""
    train_one("measurements", tune_trials=trials)


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
    from bunga.training.promotion import current_test_set, evaluate_version, fetch

    if kind not in DATA_KINDS:
        raise BungaError(f"--kind takes measurements or photos, not {kind!r}", 2)
    cfg = train_config(kind)
    s = settings()
    fetched = fetch(open_tracker(), cfg.model_name, model, cfg.cache_dir)
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


def print_decision(decision: Decision) -> None:
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
    from bunga.training.promotion import promote

    refused = []
    for k in resolve_kinds(kind, settings().dataset_dir):
        decision = promote(train_config(k), open_tracker(), version, who=who_am_i(), dry_run=dry_run)
        print_decision(decision)
        if not decision.gate.passed:
            refused.append(k)
    if refused:
        raise GateRefused(f"the gate refused the {' and '.join(refused)} candidate; the champion did not move")


@app.command("rollback")
@friendly
def rollback_cmd(kind: Annotated[str, typer.Option("--kind", "-k", help="measurements or photos")]) -> None:
    """Swap 'champion' and 'previous' (undo the last promotion)."""
    from bunga.training.promotion import rollback

    if kind not in DATA_KINDS:
        raise BungaError(f"--kind takes measurements or photos, not {kind!r}", 2)
    champion, previous = rollback(train_config(kind), open_tracker(), who=who_am_i())
    console.print(f"{kind}: champion -> v{champion}, previous -> v{previous}")


@app.command()
@friendly
def history(kind: KindOption = "all") -> None:
    """Every promotion decision and rollback, oldest first."""
    s = settings()
    kinds = list(DATA_KINDS) if kind == "all" else resolve_kinds(kind, s.dataset_dir)
    tracker = open_tracker()
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
    from bunga.training.promotion import promote, retrain_reason

    merge(data_dir=None, dataset_dir=None, impute=impute)
    refused: list[str] = []
    s = settings()
    for k in resolve_kinds(kind, s.dataset_dir):
        if if_needed:
            manifest = load_manifest(s.dataset_dir)
            digest = manifest.dataset_digest if manifest else ""
            why = retrain_reason(open_tracker(), s.model_name(k), k, digest, report)
            if why is None:
                console.print(
                    f"{k}: champion is up to date (same dataset, no monitoring alarm): not retrained", soft_wrap=True
                )
                continue
            console.print(f"{k}: retraining: {why}", highlight=False, soft_wrap=True)
        candidate = train_one(k)
        decision = promote(train_config(k), open_tracker(), candidate.version, who=who_am_i())
        print_decision(decision)
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
    tracker = open_tracker()
    kinds = list(DATA_KINDS) if kind == "all" else resolve_kinds(kind, s.dataset_dir)
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
