"""`make bench`: every benchmark in one run, then benchmarks/RESULTS.md from results/*.json and the
performance page's table (docs/performance.md) (benchmarks/harness/summary.py). `python -m benchmarks NAME...` runs only those."""

from __future__ import annotations

import sys
import time
import traceback

from benchmarks.garden import monitor_scale, pipeline, review_loop, train_scale
from benchmarks.harness.common import ROOT, save
from benchmarks.harness.report import render
from benchmarks.harness.summary import update_performance_page
from benchmarks.memory import memory
from benchmarks.quality import (
    backbones,
    garden_bands,
    not_flower,
    observations,
    photo_int8,
    photo_quality,
    quality,
    trust_bands,
)
from benchmarks.serving import api_throughput, ondevice, photo_batching, photo_latency, soak


def main() -> None:
    steps = [
        ("photo_quality", photo_quality.main),
        ("quality", quality.main),
        ("not_flower", not_flower.main),
        ("backbones", backbones.main),
        ("garden_bands", garden_bands.main),
        ("trust_bands", trust_bands.main),
        ("observations", observations.main),
        ("review_loop", review_loop.main),
        ("ondevice", ondevice.main),
        ("pipeline", pipeline.main),
        ("train_scale", train_scale.main),
        ("api_throughput", api_throughput.main),
        ("photo_latency", photo_latency.main),
        ("photo_batching", photo_batching.main),
        ("photo_int8", photo_int8.main),
        ("memory", memory.main),
        ("soak", soak.main),
        ("monitor_scale", monitor_scale.main),
    ]
    only = set(sys.argv[1:])
    for name, step in steps:
        if only and name not in only:
            continue
        start = time.perf_counter()
        try:
            step()
        except Exception as err:
            traceback.print_exc()
            save(name, {"failed": f"{type(err).__name__}: {str(err)[:300]}"})  # never keep the old figures
            print(f"benchmark {name} failed; its results are marked failed")
        print(f"{name}: {time.perf_counter() - start:.0f} s")
    (ROOT / "benchmarks" / "RESULTS.md").write_text(render())
    update_performance_page()
    print("wrote benchmarks/RESULTS.md and the performance page's table (docs/performance.md)")


if __name__ == "__main__":
    main()
