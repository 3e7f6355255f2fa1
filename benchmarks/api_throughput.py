"""Measurements API, one record per request, over HTTP on 127.0.0.1, load from wrk: bunga's /predict
(1 and 2 workers) against `mlflow models serve --env-manager local` on the same model version, and
the HTTP floors (FastAPI validating the same body and returning a constant; a bare ASGI app).
Both a logistic-regression and a random-forest champion. Medians of 3 runs.
Run: python -m benchmarks.api_throughput"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.common import save
from benchmarks.load import median_of, wrk
from benchmarks.models import ENV, prepare
from benchmarks.servers import Server, mlflow_serve, python

RECORD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
MLFLOW_BODY = {"dataframe_split": {"columns": list(RECORD), "data": [list(RECORD.values())]}}
SECONDS, REPEATS, CONCURRENCY = 4, 3, (1, 32)


def measure(server: Server, path: str, body: Any) -> dict[str, Any]:
    wrk(server.url + path, body, 8, 1)  # warm-up
    return {f"c{c}": median_of([wrk(server.url + path, body, c, SECONDS) for _ in range(REPEATS)]) for c in CONCURRENCY}


def main() -> dict[str, Any]:
    folders = prepare()
    out: dict[str, Any] = {
        "load_generator": "wrk (1 thread), POST one record per request",
        "seconds_per_run": SECONDS,
        "repeats": REPEATS,
        "results": {},
    }
    floors = [
        (
            "fastapi_constant",
            python(
                "-m",
                "uvicorn",
                "benchmarks.floor_apps:fastapi_app",
                "--port",
                "{port}",
                "--no-access-log",
                "--log-level",
                "warning",
            ),
            "/docs",
        ),
        (
            "bare_asgi",
            python(
                "-m",
                "uvicorn",
                "benchmarks.floor_apps:bare_app",
                "--port",
                "{port}",
                "--no-access-log",
                "--log-level",
                "warning",
            ),
            "/",
        ),
    ]
    for name, argv, ready in floors:
        server = Server(name, argv, ready)
        try:
            out["results"][name] = measure(server, "/predict", RECORD)
        finally:
            server.stop()
        print(name, out["results"][name])
    for family, version in (("logreg", "1"), ("random_forest", "2")):
        for workers in (1, 2):
            bunga = Server(
                f"bunga-{family}-{workers}w",
                python(
                    "-m",
                    "bunga",
                    "serve",
                    "--model-dir",
                    str(folders[family]),
                    "--port",
                    "{port}",
                    "--workers",
                    str(workers),
                ),
                "/ready",
                env={"BUNGA_SERVE_KINDS": '["measurements"]'},
            )
            try:
                out["results"][f"bunga_{family}_{workers}w"] = measure(bunga, "/predict", RECORD)
            finally:
                bunga.stop()
            print(f"bunga {family} {workers}w", out["results"][f"bunga_{family}_{workers}w"])
            mlflow = mlflow_serve(f"mlflow-{family}-{workers}w", version, workers, ENV)
            try:
                out["results"][f"mlflow_{family}_{workers}w"] = measure(mlflow, "/invocations", MLFLOW_BODY)
            finally:
                mlflow.stop()
            print(f"mlflow {family} {workers}w", out["results"][f"mlflow_{family}_{workers}w"])
    r = out["results"]
    floor = r["fastapi_constant"]["c32"]["rps"]
    out["ratios"] = {
        f"{family}_{w}w": {
            "bunga_over_mlflow_c32": r[f"bunga_{family}_{w}w"]["c32"]["rps"] / r[f"mlflow_{family}_{w}w"]["c32"]["rps"],
            "bunga_over_fastapi_floor_c32": r[f"bunga_{family}_{w}w"]["c32"]["rps"] / floor,
        }
        for family in ("logreg", "random_forest")
        for w in (1, 2)
    }
    print("ratios", out["ratios"])
    save("api_throughput", out)
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
