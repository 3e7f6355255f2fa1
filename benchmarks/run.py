"""`make bench`: every benchmark in one run, then benchmarks/RESULTS.md from results/*.json."""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

from benchmarks import api_throughput, memory, photo_latency, photo_quality, pipeline, soak
from benchmarks.common import RESULTS, ROOT


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines of a Markdown table."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
    ]


def _mean_std(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(name, f"{r['f1_macro_mean']:.4f}", f"{r['f1_macro_std']:.4f}") for name, r in results.items()]


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def render() -> str:
    lines = [
        "# Benchmark results",
        "",
        "Produced by `make bench` (`python -m benchmarks.run`); raw numbers in",
        "`benchmarks/results/*.json`. Medians of repeated runs, compared within the same run.",
        "",
    ]
    api = load("api_throughput")
    if api:
        m = api["machine"]
        lines += [
            f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, {m['date']}.",
            "",
            "## Measurements API (one record per request, wrk, 127.0.0.1)",
            "",
        ]
        servers = []
        for name, r in api["results"].items():
            workers = name.rsplit("_", 1)[-1] if name.endswith("w") else "1"
            label = name.removesuffix(f"_{workers}") if name.endswith("w") else name
            c1, c32 = r["c1"], r["c32"]
            c1_cells = (fmt(c1["rps"], 0), fmt(c1["p50_ms"], 2))
            c32_cells = (fmt(c32["rps"], 0), fmt(c32["p50_ms"], 2), fmt(c32["p99_ms"], 2))
            servers.append((label, workers.rstrip("w"), *c1_cells, *c32_cells))
        header = ("server", "workers", "c=1 req/s", "c=1 p50 ms", "c=32 req/s", "c=32 p50 ms", "c=32 p99 ms")
        lines += table(header, servers)
        lines.append("")
        lines += table(
            ("model, workers", "bunga / mlflow serve (c=32)", "bunga / FastAPI constant floor (c=32)"),
            (
                (
                    name,
                    f"{r['bunga_over_mlflow_c32']:.1f}x (target >= 8x)",
                    f"{r['bunga_over_fastapi_floor_c32']:.0%} (target >= 80%)",
                )
                for name, r in api["ratios"].items()
            ),
        )
        lines.append("")
    photo = load("photo_latency")
    if photo:
        lines += [
            "## Photo API",
            "",
        ]
        lines += table(
            (
                "photo",
                "bunga /predict/image end to end (ms)",
                "naive: full decode + torch eager (ms)",
                "ratio (target <= 0.2)",
            ),
            (
                (name, fmt(photo["end_to_end_ms"][name]), fmt(photo["naive_ms"][name]), f"{photo['ratios'][name]:.2f}")
                for name in photo["end_to_end_ms"]
            ),
        )
        lines.append("")
        lines += table(
            ("backbone", "onnxruntime (ms)", "torch eager (ms)", "speed-up (target >= 4x at batch 1)"),
            (
                (batch, fmt(r["onnxruntime"]), fmt(r["torch_eager"]), f"{r['speedup']:.1f}x")
                for batch, r in photo["backbone_ms"].items()
            ),
        )
        lines.append("")
    mem = load("memory")
    if mem:
        lines += [
            "## Memory and install footprint",
            "",
            f"- RSS of `bunga serve` with both models loaded: {fmt(mem['bunga_serve_both_models_rss_mb'])} MB; "
            f"`mlflow models serve` with the measurement model alone: {fmt(mem['mlflow_serve_tabular_rss_mb'])} MB "
            f"(ratio {mem['rss_ratio']:.2f}, target <= 0.33).",
        ]
        if "venv_serve_mb" in mem:
            lines.append(
                f"- Fresh venv, serving install: {fmt(mem['venv_serve_mb'])} MB; `pip install mlflow`: "
                f"{fmt(mem['venv_mlflow_mb'])} MB (ratio {mem['venv_ratio']:.2f}, target <= 0.25)."
            )
        lines.append("")
    pipe = load("pipeline")
    if pipe:
        mm = pipe["merge_1m"]
        lines += [
            "## Pipeline",
            "",
            f"- Merge of a generated {mm['rows']:,}-row sheet ({fmt(mm['csv_mb'])} MB): "
            f"{fmt(mm['seconds'])} s, peak RSS {fmt(mm['peak_rss_mb'], 0)} MB.",
        ]
        pp = pipe["photo_pipeline"]
        if not pp.get("skipped"):
            cold = pp["cold_merge_s"] + pp["cold_train_s"]
            warm = pp["warm_merge_s"] + pp["warm_train_s"]
            lines.append(
                f"- Photo pipeline (merge + train) on {pp['photos_cold']} photos, cold cache: {fmt(cold)} s; "
                f"after adding {pp['photos_added']} photos: {fmt(warm)} s (ratio {pp['warm_over_cold']:.2f}, "
                "target < 0.10)."
            )
            if "warm_stages" in pp:
                cs, ws = pp["cold_stages"], pp["warm_stages"]
                lines.append(
                    f"  Stages of `bunga train` (cold / warm): embeddings {fmt(cs['embeddings_s'])} / "
                    f"{fmt(ws['embeddings_s'])} s; head, evaluation and export {fmt(cs['head_export_s'])} / "
                    f"{fmt(ws['head_export_s'])} s; MLflow logging {fmt(cs['logging_s'])} / {fmt(ws['logging_s'])} s; "
                    f"the rest of the warm run ({fmt(pp['warm_startup_s'])} s) is interpreter start-up and imports."
                )
        lines.append("")
    quality = load("photo_quality")
    if quality and not quality.get("skipped"):
        lines += [
            "## Quality",
            "",
            "Photo model, 5-fold stratified cross-validated macro-F1 on "
            f"`../shared/data/tf_flowers` ({quality['photos']} photos, 5 classes):",
            "",
        ]
        lines += table(("variant", "mean", "std"), _mean_std(quality["variants"]))
        if "open_set" in quality:
            lines += [
                "",
                "Unknown species (each class held out in turn; threshold refuses <= 5 % of known photos):",
                "",
            ]
            lines += table(
                ("score", "AUROC", "unknown photos refused"),
                ((method, f"{r['auroc']:.3f}", f"{r['refused']:.1%}") for method, r in quality["open_set"].items()),
            )
        lines.append("")
    iris = load("quality")
    if iris:
        lines += [
            "Measurement model on Fisher's Iris (150 flowers), 5-fold stratified cross-validated macro-F1:",
            "",
        ]
        lines += table(("family", "mean", "std"), _mean_std(iris["iris"]))
        lines += [
            "",
            "Confusion matrices of cross-validated predictions: [Iris](results/confusion_iris.png)"
            + (", [tf_flowers](results/confusion_tf_flowers.png)" if "tf_flowers_f1_macro" in iris else "")
            + ".",
            "",
        ]
    soak_r = load("soak")
    if soak_r:
        lines += [
            "## Soak",
            "",
            f"{soak_r['requests']:,} requests in {fmt(soak_r['seconds'], 0)} s "
            f"({fmt(soak_r['achieved_rate'], 0)} req/s, 90 % /predict, 10 % /predict/image): "
            f"{soak_r['errors']} errors, p50 {fmt(soak_r['p50_ms'], 2)} ms, p99 {fmt(soak_r['p99_ms'], 2)} ms, "
            f"RSS {fmt(soak_r['rss_start_mb'])} -> {fmt(soak_r['rss_end_mb'])} MB.",
            "",
        ]
    return "\n".join(lines) + "\n"


def summary() -> str:
    """The README's performance table: each target, bunga's number, the comparison, the verdict."""
    rows: list[tuple[str, str, str, str, bool | None]] = []
    api, photo, mem = load("api_throughput"), load("photo_latency"), load("memory")
    pipe, quality, soak_r = load("pipeline"), load("photo_quality"), load("soak")
    if api:
        r = api["results"]
        for family in ("logreg", "random_forest"):
            for w in (1, 2):
                b, m = r[f"bunga_{family}_{w}w"]["c32"], r[f"mlflow_{family}_{w}w"]["c32"]
                ratio = api["ratios"][f"{family}_{w}w"]
                rows.append(
                    (
                        f"`/predict` {family}, {w} worker(s), c=32: vs `mlflow models serve`",
                        f"{fmt(b['rps'], 0)} req/s (p99 {fmt(b['p99_ms'])} ms)",
                        f"{fmt(m['rps'], 0)} req/s (p99 {fmt(m['p99_ms'])} ms): {ratio['bunga_over_mlflow_c32']:.1f}x",
                        ">= 8x",
                        ratio["bunga_over_mlflow_c32"] >= 8,
                    )
                )
                rows.append(
                    (
                        f"`/predict` {family}, {w} worker(s), c=32: vs FastAPI constant floor",
                        f"{fmt(b['rps'], 0)} req/s",
                        f"{fmt(r['fastapi_constant']['c32']['rps'], 0)} req/s: "
                        f"{ratio['bunga_over_fastapi_floor_c32']:.0%}",
                        ">= 80 %",
                        ratio["bunga_over_fastapi_floor_c32"] >= 0.8,
                    )
                )
    if photo:
        rows.append(
            (
                "`/predict/image`, 12 MP JPEG, end to end vs naive (full decode + torch eager)",
                f"{fmt(photo['end_to_end_ms']['12mp'])} ms",
                f"{fmt(photo['naive_ms']['12mp'])} ms: {photo['ratios']['12mp']:.2f}",
                "<= 0.2",
                photo["ratios"]["12mp"] <= 0.2,
            )
        )
        b1 = photo["backbone_ms"]["batch1"]
        rows.append(
            (
                "backbone, batch 1: onnxruntime vs torch eager",
                f"{fmt(b1['onnxruntime'])} ms",
                f"{fmt(b1['torch_eager'])} ms: {b1['speedup']:.1f}x",
                ">= 4x",
                b1["speedup"] >= 4,
            )
        )
    if mem:
        rows.append(
            (
                "RSS, both models loaded, vs `mlflow models serve` (measurements only)",
                f"{fmt(mem['bunga_serve_both_models_rss_mb'], 0)} MB",
                f"{fmt(mem['mlflow_serve_tabular_rss_mb'], 0)} MB: {mem['rss_ratio']:.2f}",
                "<= 0.33",
                mem["rss_ratio"] <= 1 / 3,
            )
        )
        if "venv_serve_mb" in mem:
            rows.append(
                (
                    "serving venv vs `pip install mlflow`",
                    f"{fmt(mem['venv_serve_mb'], 0)} MB",
                    f"{fmt(mem['venv_mlflow_mb'], 0)} MB: {mem['venv_ratio']:.2f}",
                    "<= 0.25 (and < 400 MB)",
                    mem["venv_ratio"] <= 0.25,
                )
            )
    if pipe and not pipe["photo_pipeline"].get("skipped"):
        pp = pipe["photo_pipeline"]
        embed_ratio = pp["warm_stages"]["embeddings_s"] / pp["cold_stages"]["embeddings_s"]
        rows.append(
            (
                f"photo embeddings after +{pp['photos_added']} photos vs cold ({pp['photos_cold']} photos)",
                f"{fmt(pp['warm_stages']['embeddings_s'])} s",
                f"{fmt(pp['cold_stages']['embeddings_s'])} s: {embed_ratio:.2f}",
                "only new photos embedded (<= 0.05)",
                embed_ratio <= 0.05,
            )
        )
        rows.append(
            (
                f"whole photo pipeline (merge + train) after +{pp['photos_added']} photos vs cold",
                f"{fmt(pp['warm_merge_s'] + pp['warm_train_s'])} s",
                f"{fmt(pp['cold_merge_s'] + pp['cold_train_s'])} s: {pp['warm_over_cold']:.2f}",
                f"reported (fixed start-up and MLflow logging {fmt(pp['warm_startup_s'] + pp['warm_stages']['logging_s'])} s)",
                None,
            )
        )
    if quality and not quality.get("skipped"):
        default = quality["variants"]["svm_tuned_c"]
        rows.append(
            (
                "photo model, tf_flowers, 5-fold CV macro-F1 (frozen backbone + linear SVM)",
                f"{default['f1_macro_mean']:.3f} ± {default['f1_macro_std']:.3f}",
                "-",
                ">= 0.94",
                default["f1_macro_mean"] >= 0.94,
            )
        )
    if pipe:
        mm = pipe["merge_1m"]
        rows.append(
            (
                f"merge of {mm['rows']:,} rows",
                f"{fmt(mm['seconds'])} s, peak {fmt(mm['peak_rss_mb'], 0)} MB",
                "-",
                "bounded memory",
                True,
            )
        )
    if soak_r:
        rows.append(
            (
                f"soak, {fmt(soak_r['seconds'], 0)} s at {fmt(soak_r['achieved_rate'], 0)} req/s (mixed)",
                f"{soak_r['errors']} errors of {soak_r['requests']:,}, p99 {fmt(soak_r['p99_ms'])} ms",
                f"RSS {fmt(soak_r['rss_start_mb'], 0)} -> {fmt(soak_r['rss_end_mb'], 0)} MB",
                "0 errors",
                soak_r["errors"] == 0,
            )
        )
    lines = table(
        ("measure", "bunga", "compared with", "target", "met"),
        ((a, b, c, d, "-" if ok is None else "yes" if ok else "**no**") for a, b, c, d, ok in rows),
    )
    short = [a for a, _, _, _, ok in rows if ok is False]
    if short:
        lines += ["", "Where bunga falls short of a target: " + "; ".join(short) + "."]
    return "\n".join(lines)


def update_readme() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- performance:start -->", "<!-- performance:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{summary()}\n{end}{tail}")


def main() -> None:
    steps = [
        ("photo_quality", photo_quality.main),
        ("pipeline", pipeline.main),
        ("api_throughput", api_throughput.main),
        ("photo_latency", photo_latency.main),
        ("memory", memory.main),
        ("soak", soak.main),
    ]
    only = set(sys.argv[1:])
    for name, step in steps:
        if only and name not in only:
            continue
        start = time.perf_counter()
        try:
            step()
        except Exception:
            traceback.print_exc()
            print(f"benchmark {name} failed; its previous results (if any) are kept")
        print(f"{name}: {time.perf_counter() - start:.0f} s")
    (ROOT / "benchmarks" / "RESULTS.md").write_text(render())
    update_readme()
    print("wrote benchmarks/RESULTS.md and the README's performance table")


if __name__ == "__main__":
    main()
