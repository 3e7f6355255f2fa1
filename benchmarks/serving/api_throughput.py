"""Measurements API, one record per request, over HTTP on 127.0.0.1, load from wrk: bunga's /predict
(1 and 2 workers) against `mlflow models serve --env-manager local` on the same model version, and
the same ONNX graph behind `mlflow models serve` (MLflow's onnx flavour: separates the runtime from
the server) and behind BentoML 1.4 (onnxruntime, the same body; its own venv), and the HTTP floors
(FastAPI validating the same body and returning a constant, with as many workers as the bunga row it
is compared with; a bare ASGI app). Both a logistic-regression and a
random-forest champion. Medians of 3 runs of 8 s; a series with any error or timeout is reported, not
compared with. What the prediction log costs is measured with the two servers (with and without the
log) taking turns, three turns each, so that a drift of the machine cannot favour either.
Run: python -m benchmarks.serving.api_throughput"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness.common import save
from benchmarks.harness.load import median_of, wrk
from benchmarks.harness.models import ENV, ONNX_PEER, prepare
from benchmarks.harness.servers import Server, bentoml_serve, mlflow_serve, python

RECORD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
MLFLOW_BODY = {"dataframe_split": {"columns": list(RECORD), "data": [list(RECORD.values())]}}
SECONDS, REPEATS, CONCURRENCY = 8, 3, (1, 32)


def measure(server: Server, path: str, body: Any) -> dict[str, Any]:
    wrk(server.url + path, body, 8, 1)  # warm-up
    return {f"c{c}": median_of([wrk(server.url + path, body, c, SECONDS) for _ in range(REPEATS)]) for c in CONCURRENCY}


def floor(name: str, app: str, ready: str, workers: int) -> Server:
    argv = python(
        "-m", "uvicorn", f"benchmarks.serving.floor_apps:{app}", "--port", "{port}", "--workers", str(workers)
    )
    return Server(f"{name}_{workers}w", [*argv, "--no-access-log", "--log-level", "warning"], ready)


def bunga_server(name: str, folder: Path, workers: int, log: bool = True) -> Server:
    """`bunga serve` of an exported folder's measurement model, with or without the prediction log."""
    argv = python("-m", "bunga", "serve", "--model-dir", str(folder), "--port", "{port}", "--workers", str(workers))
    env = {"BUNGA_SERVE_KINDS": '["measurements"]', "BUNGA_MONITOR_LOG": str(log).lower()}
    return Server(name, argv, "/ready", env=env)  # its own prediction log: {name}-monitor.db in the workspace


def run(out: dict[str, Any], key: str, start: Callable[[], Server], path: str, body: Any) -> None:
    server = start()
    try:
        out["results"][key] = measure(server, path, body)
    finally:
        server.stop()
    print(key, out["results"][key])


def run_in_turns(out: dict[str, Any], starters: dict[str, Callable[[], Server]], path: str, body: Any) -> None:
    """Servers started one at a time in turns (AB AB AB), one run per concurrency each turn; medians."""
    runs: dict[str, dict[int, list[dict[str, float]]]] = {key: {c: [] for c in CONCURRENCY} for key in starters}
    for _ in range(REPEATS):
        for key, start in starters.items():
            server = start()
            try:
                wrk(server.url + path, body, 8, 1)  # warm-up
                for c in CONCURRENCY:
                    runs[key][c].append(wrk(server.url + path, body, c, SECONDS))
            finally:
                server.stop()
    for key, by_c in runs.items():
        out["results"][key] = {f"c{c}": median_of(series) for c, series in by_c.items()}
        print(key, out["results"][key])


def ratio(r: dict[str, Any], ours: str, peer: str) -> float | None:
    """ours / peer at c=32, or None when either series had an error (not a valid comparison)."""
    if peer not in r or r[ours]["c32"]["errors"] or r[peer]["c32"]["errors"]:
        return None
    return float(r[ours]["c32"]["rps"] / r[peer]["c32"]["rps"])


def main() -> dict[str, Any]:
    folders = prepare()
    out: dict[str, Any] = {
        "load_generator": "wrk (1 thread, 30 s timeout), POST one record per request",
        "seconds_per_run": SECONDS,
        "repeats": REPEATS,
        "results": {},
    }
    for workers in (1, 2):  # each bunga row is compared with a floor running as many workers
        run(
            out,
            f"fastapi_constant_{workers}w",
            lambda: floor("fastapi_constant", "fastapi_app", "/docs", workers),
            "/predict",
            RECORD,
        )
    run(out, "bare_asgi_1w", lambda: floor("bare_asgi", "bare_app", "/", 1), "/predict", RECORD)
    for family, version in (("logreg", "1"), ("random_forest", "2")):
        for workers in (1, 2):
            start = lambda: bunga_server(f"bunga-{family}-{workers}w", folders[family], workers)  # noqa: E731
            if family == "logreg" and workers == 1:  # what the prediction log costs: the same server without it
                nolog = lambda: bunga_server("bunga-logreg-1w-nolog", folders[family], 1, log=False)  # noqa: E731
                run_in_turns(out, {"bunga_logreg_1w": start, "bunga_logreg_1w_nolog": nolog}, "/predict", RECORD)
            else:
                run(out, f"bunga_{family}_{workers}w", start, "/predict", RECORD)
            run(
                out,
                f"mlflow_{family}_{workers}w",
                lambda: mlflow_serve(f"mlflow-{family}-{workers}w", version, workers, ENV),
                "/invocations",
                MLFLOW_BODY,
            )
            if family == "logreg":  # the same ONNX graph bunga serves, behind BentoML with onnxruntime
                graph = folders[family] / "measurements"
                classes = json.loads((graph / "bunga.json").read_text())["classes"]
                run(
                    out,
                    f"bentoml_onnx_{family}_{workers}w",
                    lambda: bentoml_serve(f"bentoml-{workers}w", graph / "model.onnx", classes, workers),
                    "/predict",
                    RECORD,
                )
            if family == "logreg":  # the same ONNX graph bunga serves, behind MLflow's server
                run(
                    out,
                    f"mlflow_onnx_{family}_{workers}w",
                    lambda: mlflow_serve(f"mlflow-onnx-{workers}w", "1", workers, ENV, model=ONNX_PEER),
                    "/invocations",
                    MLFLOW_BODY,
                )
    r = out["results"]
    out["ratios"] = {
        f"{family}_{w}w": {
            "bunga_over_mlflow_c32": ratio(r, f"bunga_{family}_{w}w", f"mlflow_{family}_{w}w"),
            "bunga_over_mlflow_onnx_c32": ratio(r, f"bunga_{family}_{w}w", f"mlflow_onnx_{family}_{w}w"),
            "bunga_over_bentoml_onnx_c32": ratio(r, f"bunga_{family}_{w}w", f"bentoml_onnx_{family}_{w}w"),
            "bunga_over_fastapi_floor_c32": ratio(r, f"bunga_{family}_{w}w", f"fastapi_constant_{w}w"),
        }
        for family in ("logreg", "random_forest")
        for w in (1, 2)
    }
    out["ratios"]["log_cost_1w"] = {"with_over_without_log_c32": ratio(r, "bunga_logreg_1w", "bunga_logreg_1w_nolog")}
    print("ratios", out["ratios"])
    save("api_throughput", out)
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
