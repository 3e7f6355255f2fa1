"""What the prediction log costs `/predict`, with the two servers taking turns (a dev measurement; the
`make bench` row runs them one after the other). Four turns of 8 s at c=32, 1 worker, logistic
regression; prints the median req/s of each and the share kept with the log.
Run: PYTHONPATH=. python scripts/log_cost_turns.py"""

from __future__ import annotations

import statistics

from benchmarks.common import WORK
from benchmarks.load import wrk
from benchmarks.models import prepare
from benchmarks.servers import Server, python

RECORD = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
TURNS, SECONDS, CONNECTIONS = 4, 8, 32


def main() -> None:
    folders = prepare()
    argv = python("-m", "bunga", "serve", "--model-dir", str(folders["logreg"]), "--port", "{port}")
    env = {"BUNGA_SERVE_KINDS": '["measurements"]', "BUNGA_MONITOR_DB": str(WORK / "monitor-logcost.db")}
    arms = {"log": {}, "nolog": {"BUNGA_MONITOR_LOG": "false"}}
    rps: dict[str, list[float]] = {arm: [] for arm in arms}
    for turn in range(TURNS):
        for arm, extra in arms.items():
            server = Server(f"logcost-{arm}", argv, "/ready", env={**env, **extra})
            try:
                wrk(server.url + "/predict", RECORD, 8, 1)  # warm-up
                rps[arm].append(wrk(server.url + "/predict", RECORD, CONNECTIONS, SECONDS)["rps"])
                print(f"turn {turn} {arm}: {rps[arm][-1]:,.0f} req/s", flush=True)
            finally:
                server.stop()
    medians = {arm: statistics.median(values) for arm, values in rps.items()}
    print(
        f"with the log {medians['log']:,.0f} req/s, without {medians['nolog']:,.0f}: "
        f"{medians['log'] / medians['nolog']:.0%} kept"
    )


if __name__ == "__main__":
    main()
