"""Running the service and watching it: ``bunga serve`` and ``bunga monitor``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bunga.cli.common import (
    app,
    console,
    err_console,
    friendly,
    open_tracker,
    settings,
)
from bunga.config import get_settings
from bunga.errors import BungaError


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

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from bunga.garden.inbox import export_if_database
    from bunga.monitor.checks import Thresholds
    from bunga.monitor.queries import SERVER, Window
    from bunga.monitor.report import write
    from bunga.monitor.run import log_monitoring_run, profile_lookup, run_checks

    s = settings()
    export_if_database(s.inbox_dir, s.inbox_db)  # live accuracy joins visitors' labels from the inbox
    window = Window(since=time.time() - hours * 3600 if hours is not None else None, last=last)
    thresholds = Thresholds(psi=s.monitor_psi_alarm, p_value=s.monitor_p_alarm, min_volume=s.monitor_min_volume)
    columns = (TextColumn("checking {task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(
        *columns, TimeElapsedColumn(), console=err_console, transient=True, disable=not sys.stderr.isatty()
    ) as bar:
        task = bar.add_task("versions", total=None)

        def step(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=what)

        reports, profiles = run_checks(
            s.monitor_db, s.inbox_dir, window, thresholds, profile_lookup(model_dir, open_tracker, s.cache_dir), step
        )
    if not reports:
        raise BungaError(f"no predictions in {s.monitor_db} for that window")
    table = Table(title="Monitoring")
    for column in ("kind", "version", "answers by", "predictions", "recognised", "est. accuracy", "live accuracy"):
        table.add_column(column)
    table.add_column("alarms")
    for r in reports:
        live = f"{r.live_accuracy[0]:.0%} (n={r.live_accuracy[3]})" if r.live_accuracy else "-"
        table.add_row(
            r.kind,
            r.version,
            r.source,
            f"{r.volume:,}",
            f"{r.recognised_rate:.0%}",
            f"{r.estimated_accuracy[0]:.0%}",
            live,
            str(len(r.alarms)),
        )
    console.print(table)
    for r in reports:
        for alarm in r.alarms:
            if r.source == SERVER:
                console.print(f"[red]alarm[/red] {r.kind} v{r.version}: {alarm}", highlight=False, soft_wrap=True)
            else:  # phones' answers are claims: shown, never an exit code or a reason to retrain
                line = f"[yellow]phone answers[/yellow] {r.kind} v{r.version}: {alarm}"
                console.print(line, highlight=False, soft_wrap=True)
    json_path, html_path = write(reports, profiles, {"last": last, "hours": hours}, out, thresholds.psi)
    console.print(f"report: {html_path} (and {json_path.name})", highlight=False)
    if log_run:
        log_monitoring_run(open_tracker(), reports, json_path, html_path)
        console.print("logged to MLflow experiment bunga-monitoring", highlight=False)
    if any(r.alarms for r in reports if r.source == SERVER):
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
