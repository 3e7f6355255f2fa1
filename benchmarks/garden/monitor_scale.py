"""`bunga monitor` over large prediction logs: wall time and peak memory of the command in a fresh
process for 100,000 and 1,000,000 logged predictions (memory must not grow with the window), and
which measurements it flags when petal length is shifted by +1 cm and nothing else. Beside it,
Evidently's data drift preset answers the same question on the same 1,000,000 rows (read from a
CSV export of the log, against the merged dataset as reference), in a venv of its own: its newest
release does not import with pandas 3, which bunga's training install has.
Run: python -m benchmarks.garden.monitor_scale"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness.common import WORK, save
from benchmarks.harness.models import SPACE, prepare
from benchmarks.harness.servers import peer_venv
from benchmarks.memory.peak import Measured
from bunga.bundle import read_bundle
from bunga.monitor.log import INSERT, Record
from bunga.monitor.store import open_store
from bunga.schemas import FEATURES, ReferenceProfile

SIZES = (100_000, 1_000_000)
EVIDENTLY = ("evidently==0.7.23", "pandas<3")
EVIDENTLY_SCRIPT = """
import json, os, sys, time
start = time.perf_counter()
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
current, reference = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2])
loaded = time.perf_counter()
result = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference).dict()
flagged = []
for metric in result["metrics"]:
    config = metric["config"]
    if config.get("type", "").endswith("ValueDrift"):
        value, threshold = metric["value"], config["threshold"]
        drifted = value < threshold if "p_value" in config["method"] else value > threshold
        if drifted:
            flagged.append(config["column"])
print(json.dumps({"load_s": loaded - start, "report_s": time.perf_counter() - loaded, "flagged": sorted(flagged),
                  "method": sorted({m["config"].get("method", "") for m in result["metrics"]} - {""})}))
"""


def fill(path: Any, n: int, profile: ReferenceProfile, name: str, version: str) -> None:
    """``n`` logged measurement predictions like the training profile, petal length +1 cm."""
    path.unlink(missing_ok=True)
    db = open_store(path)
    rng = np.random.default_rng(0)
    classes = list(profile.class_priors)
    priors = np.asarray(list(profile.class_priors.values()))
    now = time.time()
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        levels = np.linspace(0, 1, len(profile.top_prob_quantiles))
        top = np.interp(rng.uniform(0, 1, m), levels, profile.top_prob_quantiles)
        q = np.linspace(0, 1, 101)
        x = [np.interp(rng.uniform(0, 1, m), q, profile.feature_quantiles[f]) for f in FEATURES]
        x[FEATURES.index("petal_length")] += 1.0
        predicted = rng.choice(classes, m, p=priors)
        rows = [  # whole log records (the columns the log has today, later ones left empty)
            Record(
                now,
                "measurements",
                name,
                version,
                "champion",
                str(predicted[i]),
                float(top[i]),
                True,
                None,
                1.0,
                float(x[0][i]),
                float(x[1][i]),
                float(x[2][i]),
                float(x[3][i]),
            )
            for i in range(m)
        ]
        db.executemany(INSERT, rows)
    db.close()


def timed_monitor(db: Any, model_dir: Any, out: Any) -> dict[str, Any]:
    """Wall time and the peak RSS of one `bunga monitor` (its own: benchmarks/peak.py)."""
    env = {**os.environ, "BUNGA_MONITOR_DB": str(db)}
    start = time.perf_counter()
    with (WORK / "monitor_scale.log").open("w") as log:
        child = Measured(
            [sys.executable, "-m", "bunga", "monitor", "--model-dir", str(model_dir), "--out", str(out), "--no-mlflow"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=WORK,
        )
        code, peak_mb = child.wait()
    seconds = time.perf_counter() - start
    if code not in (0, 4):
        raise RuntimeError(f"bunga monitor failed ({code}): {(WORK / 'monitor_scale.log').read_text()[-2000:]}")
    report = json.loads((out / "monitor-report.json").read_text())
    flagged = sorted({a.split(": ", 1)[1].split(" drifted")[0] for a in report["alarms"] if " drifted" in a})
    return {"seconds": seconds, "peak_rss_mb": peak_mb, "exit_code": code, "flagged": flagged}


def evidently_python() -> Path:
    """A venv of Evidently's own (made once, from the package index)."""
    return peer_venv("evidently-venv", EVIDENTLY, "evidently.presets", {"DO_NOT_TRACK": "1"})


def export_csv(db_path: Path, out: Path) -> None:
    """The logged measurements as a CSV, as a user would hand them to Evidently."""
    db = open_store(db_path, read_only=True)
    with out.open("w") as handle:
        handle.write(",".join(FEATURES) + "\n")
        cursor = db.execute("SELECT f1, f2, f3, f4 FROM predictions")
        while chunk := cursor.fetchmany(100_000):
            handle.writelines(f"{a},{b},{c},{d}\n" for a, b, c, d in chunk)
    db.close()


def timed_evidently(current: Path, reference: Path) -> dict[str, Any]:
    """Evidently's data drift preset in a fresh process: wall time, peak RSS, what it flags."""
    env = {**os.environ, "DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"}
    script = WORK / "evidently_drift.py"
    script.write_text(EVIDENTLY_SCRIPT)
    start = time.perf_counter()
    with (WORK / "evidently.log").open("w") as log:
        child = Measured(
            [str(evidently_python()), str(script), str(current), str(reference)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        assert child.proc.stdout is not None
        output = child.proc.stdout.read()
        code, peak_mb = child.wait()
    seconds = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"evidently failed: {(WORK / 'evidently.log').read_text()[-2000:]}")
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_mb,
        **json.loads(output.decode().strip().splitlines()[-1]),
    }


def main() -> dict[str, Any]:
    folders = prepare()
    model_dir = folders["logreg"]
    card, _ = read_bundle(model_dir / "measurements")
    if card.profile is None:
        raise RuntimeError("the benchmark model has no reference profile")
    out: dict[str, Any] = {"shifted": "petal_length +1 cm", "runs": {}}
    for n in SIZES:
        db = WORK / f"monitor-scale-{n}.db"
        fill(db, n, card.profile, card.name, card.version or "1")
        out["runs"][str(n)] = timed_monitor(db, model_dir, WORK / f"monitor-scale-{n}")
        if n == max(SIZES):
            current, reference = WORK / "evidently-current.csv", WORK / "evidently-reference.csv"
            export_csv(db, current)
            with (SPACE / "Dataset Bunga" / "flowers_dataset.csv").open() as source:
                rows = list(csv.DictReader(source))
            reference.write_text(
                ",".join(FEATURES) + "\n" + "".join(",".join(r[f] for f in FEATURES) + "\n" for r in rows)
            )
            out["evidently"] = timed_evidently(current, reference)
            out["evidently"]["version"] = EVIDENTLY[0]
            print("evidently", out["evidently"])
            current.unlink()
        db.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            (WORK / f"monitor-scale-{n}.db{suffix}").unlink(missing_ok=True)
        print(n, out["runs"][str(n)])
    save("monitor_scale", out)
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
