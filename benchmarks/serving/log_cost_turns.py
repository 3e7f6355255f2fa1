"""What the prediction log costs `/predict`: only the `make bench` row's servers (with and without the
log, taking turns), in about three minutes instead of the whole API benchmark. A dev measurement.
Run: python -m benchmarks.serving.log_cost_turns"""

from __future__ import annotations

from typing import Any

from benchmarks.harness.models import prepare
from benchmarks.serving.api_throughput import RECORD, bunga_server, run_in_turns


def main() -> None:
    folder = prepare()["logreg"]
    out: dict[str, Any] = {"results": {}}
    run_in_turns(
        out,
        {
            "log": lambda: bunga_server("logcost-log", folder, 1),
            "nolog": lambda: bunga_server("logcost-nolog", folder, 1, log=False),
        },
        "/predict",
        RECORD,
    )
    log, nolog = (out["results"][arm]["c32"]["rps"] for arm in ("log", "nolog"))
    print(f"c=32, medians of the turns: with the log {log:,.0f} req/s, without {nolog:,.0f}: {log / nolog:.0%} kept")


if __name__ == "__main__":
    main()
