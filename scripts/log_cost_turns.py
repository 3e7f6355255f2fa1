"""What the prediction log costs `/predict`: only the `make bench` row's servers (with and without the
log, taking turns), in about three minutes instead of the whole API benchmark. A dev measurement.
Run: PYTHONPATH=. python scripts/log_cost_turns.py"""

from __future__ import annotations

from typing import Any

from benchmarks.api_throughput import RECORD, run_in_turns
from benchmarks.common import WORK
from benchmarks.models import prepare
from benchmarks.servers import Server, python


def main() -> None:
    argv = python("-m", "bunga", "serve", "--model-dir", str(prepare()["logreg"]), "--port", "{port}")
    env = {"BUNGA_SERVE_KINDS": '["measurements"]', "BUNGA_MONITOR_DB": str(WORK / "monitor-logcost.db")}
    quiet = {**env, "BUNGA_MONITOR_LOG": "false"}
    out: dict[str, Any] = {"results": {}}
    run_in_turns(
        out,
        {
            "log": lambda: Server("logcost-log", argv, "/ready", env=env),
            "nolog": lambda: Server("logcost-nolog", argv, "/ready", env=quiet),
        },
        "/predict",
        RECORD,
    )
    log, nolog = (out["results"][arm]["c32"]["rps"] for arm in ("log", "nolog"))
    print(f"c=32, medians of the turns: with the log {log:,.0f} req/s, without {nolog:,.0f}: {log / nolog:.0%} kept")


if __name__ == "__main__":
    main()
