"""Pipeline costs: the merge of a generated 1,000,000-row sheet (time, peak RSS), and the photo
pipeline on ../shared/data/tf_flowers from a cold embedding cache and again after adding 10 photos.
Run: python -m benchmarks.garden.pipeline"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness.common import SHARED_FLOWERS, WORK, save
from benchmarks.memory.peak import Measured


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall time and peak RSS of one `bunga` command in a fresh process.

    The peak is that command's own, read by a small launcher (benchmarks/peak.py) so the runner's
    memory is not counted.
    """
    out = WORK / "run_cli.log"
    WORK.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with out.open("w") as log:
        child = Measured(
            [sys.executable, "-m", "bunga", *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        code, peak_mb = child.wait()
    seconds = time.perf_counter() - start
    text = out.read_text()
    if code != 0:
        raise RuntimeError(f"bunga {' '.join(args)} failed: {text[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": peak_mb, "stdout": text}


STAGES = re.compile(r"embeddings ([\d.]+) s, head, evaluation and export ([\d.]+) s, logging ([\d.]+) s")


def stages(stdout: str) -> dict[str, float]:
    """The stage timings `bunga train` prints for a photo run."""
    found = STAGES.search(" ".join(stdout.split()))
    if found is None:
        raise RuntimeError(f"no stage timings in: {stdout[-600:]}")
    embed, head, log = map(float, found.groups())
    return {"embeddings_s": embed, "head_export_s": head, "logging_s": log}


def big_merge(rows: int = 1_000_000) -> dict[str, Any]:
    folder = WORK / "merge1m"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "collected_data").mkdir(parents=True)
    rng = random.Random(0)
    species = ["setosa", "versicolor", "virginica"]
    with (folder / "collected_data" / "big.csv").open("w") as f:
        f.write("specimen_id,sepal_length,sepal_width,petal_length,petal_width,species\n")
        for i in range(rows):
            f.write(
                f"G{i:07d},{rng.uniform(4, 8):.1f},{rng.uniform(2, 4.5):.1f},{rng.uniform(1, 7):.1f},"
                f"{rng.uniform(0.1, 2.5):.1f},{species[i % 3]}\n"
            )
    size_mb = (folder / "collected_data" / "big.csv").stat().st_size / 2**20
    # peak RSS of the merge alone: measured in a child that only runs the merge
    measured = run_cli(["merge"], folder)
    print(
        f"merge of {rows:,} rows ({size_mb:.0f} MB): {measured['seconds']:.1f} s, "
        f"peak RSS {measured['peak_rss_mb']:.0f} MB"
    )
    return {"rows": rows, "csv_mb": size_mb, **{k: v for k, v in measured.items() if k != "stdout"}}


def photo_pipeline() -> dict[str, Any]:
    if not SHARED_FLOWERS.is_dir():
        print(f"skipped photo pipeline: {SHARED_FLOWERS} is absent")
        return {"skipped": True}
    folder = WORK / "photos"
    shutil.rmtree(folder, ignore_errors=True)
    photos = sorted(SHARED_FLOWERS.glob("*/*.jpg"))
    held = set(random.Random(1).sample(range(len(photos)), 10))
    for i, path in enumerate(photos):
        if i not in held:
            target = folder / "collected_data" / "tf_flowers" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    cold_merge = run_cli(["merge"], folder, env)
    cold = run_cli(["train", "--kind", "photos"], folder, env)
    for i in held:
        target = folder / "collected_data" / "tf_flowers" / photos[i].parent.name / photos[i].name
        shutil.copy(photos[i], target)
    warm_merge = run_cli(["merge"], folder, env)
    warm = run_cli(["train", "--kind", "photos"], folder, env)
    out = {
        "photos_cold": len(photos) - len(held),
        "photos_added": len(held),
        "cold_merge_s": cold_merge["seconds"],
        "cold_train_s": cold["seconds"],
        "warm_merge_s": warm_merge["seconds"],
        "warm_train_s": warm["seconds"],
        "warm_over_cold": (warm["seconds"] + warm_merge["seconds"]) / (cold["seconds"] + cold_merge["seconds"]),
        "cold_stages": stages(cold["stdout"]),
        "warm_stages": stages(warm["stdout"]),
    }
    fixed = warm["seconds"] - sum(out["warm_stages"].values())  # interpreter, imports, MLflow client
    out["warm_startup_s"] = fixed
    print(
        f"photo pipeline: cold {out['cold_merge_s'] + out['cold_train_s']:.1f} s, after +10 photos "
        f"{out['warm_merge_s'] + out['warm_train_s']:.1f} s (ratio {out['warm_over_cold']:.2f}); warm train: "
        f"embeddings {out['warm_stages']['embeddings_s']:.1f} s (cold {out['cold_stages']['embeddings_s']:.1f} s), "
        f"head+export {out['warm_stages']['head_export_s']:.1f} s, logging {out['warm_stages']['logging_s']:.1f} s, "
        f"start-up {fixed:.1f} s"
    )
    return out


def main() -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    out = {"merge_1m": big_merge(), "photo_pipeline": photo_pipeline()}
    save("pipeline", out)
    return out


if __name__ == "__main__":
    main()
