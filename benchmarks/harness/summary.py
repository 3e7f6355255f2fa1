"""The performance page's table (docs/performance.md): for every goal, bunga's figure, what it is compared with, the
target and the verdict, built from results/*.json. A result measured on other code says "stale"."""

from __future__ import annotations

from typing import Any

from benchmarks.harness.common import ROOT
from benchmarks.harness.report import fmt, load, staleness, table

Row = tuple[str, str, str, str, bool | None, str]  # measure, bunga, compared with, target, met, source


def _api_rows(api: dict[str, Any]) -> list[Row]:
    r, rows = api["results"], []
    for family in ("logreg", "random_forest"):
        for w in (1, 2):
            b = r[f"bunga_{family}_{w}w"]["c32"]
            ratios = api["ratios"][f"{family}_{w}w"]
            peers = [("`mlflow models serve`", f"mlflow_{family}_{w}w", "bunga_over_mlflow_c32", 8.0)]
            if f"mlflow_onnx_{family}_{w}w" in r:
                peers.append(
                    (
                        "`mlflow models serve`, same ONNX graph",
                        f"mlflow_onnx_{family}_{w}w",
                        "bunga_over_mlflow_onnx_c32",
                        0.0,
                    )
                )
            if f"bentoml_onnx_{family}_{w}w" in r:
                peers.append(
                    ("BentoML 1.4, same ONNX graph", f"bentoml_onnx_{family}_{w}w", "bunga_over_bentoml_onnx_c32", 4.0)
                )
            for label, key, ratio_key, goal in peers:
                m, value = r[key]["c32"], ratios.get(ratio_key)
                compared = f"{fmt(m['rps'], 0)} req/s (p99 {fmt(m['p99_ms'])} ms)"
                compared += f": {value:.1f}x" if value is not None else f", {r[key]['c32']['errors']} errors: invalid"
                rows.append(
                    (
                        f"`/predict` {family}, {w} worker(s), c=32: vs {label}",
                        f"{fmt(b['rps'], 0)} req/s (p99 {fmt(b['p99_ms'])} ms)",
                        compared,
                        f">= {goal:g}x" if goal else "reported",
                        None if value is None or not goal else value >= goal,
                        "api_throughput",
                    )
                )
            floor = ratios["bunga_over_fastapi_floor_c32"]
            rows.append(
                (
                    f"`/predict` {family}, {w} worker(s), c=32: vs FastAPI constant floor, {w} worker(s)",
                    f"{fmt(b['rps'], 0)} req/s",
                    f"{fmt(r[f'fastapi_constant_{w}w']['c32']['rps'], 0)} req/s: "
                    + (f"{floor:.0%}" if floor is not None else "invalid"),
                    ">= 80 %",
                    None if floor is None else floor >= 0.8,
                    "api_throughput",
                )
            )
    return rows


def _log_rows(api: dict[str, Any]) -> list[Row]:
    cost = api["ratios"].get("log_cost_1w", {}).get("with_over_without_log_c32")
    if "bunga_logreg_1w_nolog" not in api["results"]:
        return []
    r = api["results"]
    return [
        (
            "`/predict` logreg, 1 worker, c=32: with the prediction log vs without",
            f"{r['bunga_logreg_1w']['c32']['rps']:,.0f} req/s",
            f"{r['bunga_logreg_1w_nolog']['c32']['rps']:,.0f} req/s without: "
            + ("invalid (a series had errors)" if cost is None else f"{cost:.0%} kept"),
            ">= 90 % kept (log costs <= 10 %)",
            None if cost is None else cost >= 0.90,
            "api_throughput",
        )
    ]


def _photo_rows(photo: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name, label, goal in (("12mp", "12 MP", 0.2), ("500px", "500 px", 0.25)):  # #12 item 6, #15 item 4
        rows.append(
            (
                f"`/predict/image`, {label} JPEG, end to end vs naive (full decode + torch eager)",
                f"{fmt(photo['end_to_end_ms'][name])} ms",
                f"{fmt(photo['naive_ms'][name])} ms: {photo['ratios'][name]:.2f}",
                f"<= {goal:g}",
                photo["ratios"][name] <= goal,
                "photo_latency",
            )
        )
    b1 = photo["backbone_ms"]["batch1"]
    rows.append(
        (
            "backbone, batch 1: onnxruntime (serving settings) vs torch eager, each timed alone",
            f"{fmt(b1['onnxruntime'])} ms",
            f"{fmt(b1['torch_eager'])} ms: {b1['speedup']:.1f}x",
            ">= 4x",
            b1["speedup"] >= 4,
            "photo_latency",
        )
    )
    return rows


def _batching_rows(batching: dict[str, Any]) -> list[Row]:
    on, off = batching["servers"]["batched"], batching["servers"]["unbatched"]
    ratios, limit = batching["ratios"], batching["limit"]
    return [
        (
            "`/predict/image` 500 px, 1 worker, c=8: adaptive batching vs none, photos/s",
            f"{fmt(on['c8']['rps'])} /s (waiting 5 ms: {fmt(batching['servers']['batched_wait5ms']['c8']['rps'])} /s)",
            f"{fmt(off['c8']['rps'])} /s: {ratios['c8_batched_vs_unbatched']:.2f}x",
            ">= 2x",
            ratios["c8_batched_vs_unbatched"] >= 2,
            "photo_batching",
        ),
        (
            "`/predict/image` 500 px, 1 worker, c=1: p50 latency added by batching",
            f"{fmt(on['c1']['p50_ms'], 2)} ms",
            f"{fmt(off['c1']['p50_ms'], 2)} ms unbatched: {ratios['c1_p50_added_ms']:+.2f} ms",
            "<= 2 ms worse",
            ratios["c1_p50_added_ms"] <= 2,
            "photo_batching",
        ),
        (
            "`/predict/image` 500 px, 1 worker, c=32 vs the graph's own batch-32 throughput in-process",
            f"{fmt(on['c32']['rps'])} /s (p99 {fmt(on['c32']['p99_ms'], 0)} ms; unbatched {fmt(off['c32']['rps'])} /s, "
            f"p99 {fmt(off['c32']['p99_ms'], 0)} ms)",
            f"{fmt(limit['batch32_photos_per_s'])} /s: {ratios['c32_batched_vs_limit']:.0%} (batch 1 in-process: "
            f"{fmt(limit['batch1_photos_per_s'])} /s, so batch 32 is {ratios['limit_batch32_vs_batch1']:.2f}x batch 1)",
            ">= 80 %",
            ratios["c32_batched_vs_limit"] >= 0.8,
            "photo_batching",
        ),
    ]


def _int8_rows(int8: dict[str, Any]) -> list[Row]:
    """Met only when int8 is fast enough *and* keeps the photo model's quality; a run that did not
    measure the quality (older results, or no ../shared photos) cannot say the goal is met."""
    rows: list[Row] = []
    for method, r in int8["int8"].items():
        fast = r["batch1_speedup"] >= 1.8
        q = r.get("quality")
        if q is None:
            quality, ok = "macro-F1 and open-set AUROC not measured", False
        else:
            f1_drop, auroc_drop = q["f1_drop"], q["auroc_drop"]
            quality = (
                f"macro-F1 {q['f1_macro']:.3f} ({-f1_drop:+.3f}), open-set AUROC {q['auroc']:.3f} ({-auroc_drop:+.3f})"
            )
            ok = fast and f1_drop <= 0.005 and auroc_drop <= 0.01
        rows.append(
            (
                f"int8 backbone (static, QDQ, {method} calibration) vs float32, batch 1",
                f"{fmt(r['batch1_photos_per_s'])} photos/s; {quality}; ImageNet top-1 kept {r['imagenet_top1_agreement']:.0%}",
                f"{fmt(int8['float32']['batch1_photos_per_s'])} photos/s: {r['batch1_speedup']:.2f}x",
                ">= 1.8x, macro-F1 within 0.5 point and open-set AUROC within 0.01 of float32",
                ok,
                "photo_int8",
            )
        )
    return rows


def _memory_rows(mem: dict[str, Any]) -> list[Row]:
    b, m = mem["bunga_serve_both_models"], mem["mlflow_serve_tabular"]
    rows: list[Row] = [
        (
            "memory, both models loaded, vs `mlflow models serve` (measurements only): PSS of the process tree",
            f"{fmt(b['tree_pss_mb'], 0)} MB",
            f"{fmt(m['tree_pss_mb'], 0)} MB: {mem['pss_ratio']:.2f}",
            "<= 0.33",
            mem["pss_ratio"] <= 1 / 3,
            "memory",
        ),
        (
            "memory, both models loaded, vs `mlflow models serve`: RSS of the serving process alone",
            f"{fmt(b['server_rss_mb'], 0)} MB",
            f"{fmt(m['server_rss_mb'], 0)} MB: {mem['server_rss_ratio']:.2f}",
            "<= 0.33",
            mem["server_rss_ratio"] <= 1 / 3,
            "memory",
        ),
    ]
    if "venv_serve_mb" in mem:
        rows.append(
            (
                "serving venv vs `pip install mlflow`",
                f"{fmt(mem['venv_serve_mb'], 0)} MB",
                f"{fmt(mem['venv_mlflow_mb'], 0)} MB: {mem['venv_ratio']:.2f}",
                "<= 0.25 (and < 400 MB)",
                mem["venv_ratio"] <= 0.25,
                "memory",
            )
        )
    if "runtime_stage_mb" in mem:
        rows.append(
            (
                "the runtime Docker stage's venv (the Dockerfile's steps: locked serving install; no pip, numpy tests or onnxruntime tooling; extension modules stripped)",
                f"{fmt(mem['runtime_stage_mb'], 0)} MB",
                f"fresh venv with the serving install: {fmt(mem['venv_serve_mb'], 0)} MB",
                "<= 200 MB",
                mem["runtime_stage_mb"] <= 200,
                "memory",
            )
        )
    if "venv_run_mb" in mem:
        rows.append(
            (
                "`make run` environment (bunga[serve,image]: merge, train, serve), no torch",
                f"{fmt(mem['venv_run_mb'], 0)} MB",
                f"{fmt(mem['venv_run_with_torch_mb'], 0)} MB with torch 2.13 (CPU) and efficientnet-lite-pytorch: "
                f"{mem['venv_run_ratio']:.2f}",
                "reported (no torch needed)",
                None,
                "memory",
            )
        )
    return rows


def _pipeline_rows(pipe: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    pp = pipe["photo_pipeline"]
    if not pp.get("skipped"):
        embed_ratio = pp["warm_stages"]["embeddings_s"] / pp["cold_stages"]["embeddings_s"]
        rows.append(
            (
                f"whole photo pipeline (merge + train) after +{pp['photos_added']} photos vs cold ({pp['photos_cold']} photos)",
                f"{fmt(pp['warm_merge_s'] + pp['warm_train_s'])} s (embedding stage {fmt(pp['warm_stages']['embeddings_s'])} s)",
                f"{fmt(pp['cold_merge_s'] + pp['cold_train_s'])} s: {pp['warm_over_cold']:.2f} "
                f"(embedding stage {fmt(pp['cold_stages']['embeddings_s'])} s: {embed_ratio:.2f})",
                "< 0.10",
                pp["warm_over_cold"] < 0.10,
                "pipeline",
            )
        )
    mm = pipe["merge_1m"]
    rows.append(
        (
            f"merge of {mm['rows']:,} rows",
            f"{fmt(mm['seconds'])} s, peak {fmt(mm['peak_rss_mb'], 0)} MB",
            "-",
            "bounded memory (peak <= 512 MB)",
            mm["peak_rss_mb"] <= 512,
            "pipeline",
        )
    )
    return rows


def _scale_rows(scale: dict[str, Any]) -> list[Row]:
    small, large = (scale["runs"][k] for k in sorted(scale["runs"], key=int))
    ratios = scale["ratios"]

    def run(r: dict[str, Any], what: str) -> str:
        return f"{r['photos']:,} photos: " + what.format(**r)

    return [
        (
            f"`bunga train` on {large['photos']:,} photos (cold cache) vs {small['photos']:,}: time",
            run(large, "{train_s:.0f} s (embeddings {stages[embeddings_s]:.0f} s)"),
            run(small, "{train_s:.0f} s: ") + f"{ratios['train_s']:.1f}x for {ratios['photos']:.0f}x the photos",
            "reported",
            None,
            "train_scale",
        ),
        (
            f"`bunga train` on {large['photos']:,} photos vs {small['photos']:,}: peak memory",
            run(large, "{train_peak_rss_mb:.0f} MB"),
            run(small, "{train_peak_rss_mb:.0f} MB: ") + f"{ratios['train_peak_rss']:.2f}x",
            "does not grow (<= 1.10x)",
            ratios["train_peak_rss"] <= 1.10,
            "train_scale",
        ),
        (
            f"embedding cache for {large['photos']:,} photos",
            f"{large['cache_mb']:.0f} MB ({large['cache_mb'] * 1024 / large['photos']:.1f} KiB per photo)",
            f"{small['cache_mb']:.0f} MB for {small['photos']:,}",
            "reported",
            None,
            "train_scale",
        ),
    ]


def _quality_rows(quality: dict[str, Any]) -> list[Row]:
    default = quality["variants"]["svm_tuned_c"]
    rows: list[Row] = [
        (
            "photo model, tf_flowers, 5-fold CV macro-F1 (frozen backbone + linear SVM)",
            f"{default['f1_macro_mean']:.3f} ± {default['f1_macro_std']:.3f}",
            "-",
            ">= 0.96",
            default["f1_macro_mean"] >= 0.96,
            "photo_quality",
        )
    ]
    if "open_set" in quality:
        best = max(quality["open_set"].items(), key=lambda kv: kv[1]["auroc"])
        method, r = best
        rows.append(
            (
                f"unknown species refused, tf_flowers hold-one-class-out, 95 % of known kept ({method} score)",
                f"{r['refused']:.1%}, AUROC {r['auroc']:.3f}",
                "-",
                ">= 90 %, AUROC >= 0.98",
                r["refused"] >= 0.90 and r["auroc"] >= 0.98,
                "photo_quality",
            )
        )
    return rows


def _not_flower_rows(nf: dict[str, Any]) -> list[Row]:
    return [
        (
            f"not-a-flower photos refused ({nf['nonflowers']} dev photos; ImageNet-like, may flatter)",
            f"{nf['nonflower_refused']:.1%} at {nf['known_kept']:.1%} of known flowers kept",
            "-",
            ">= 99 % at >= 95 % kept",
            nf["nonflower_refused"] >= 0.99 and nf["known_kept"] >= 0.95,
            "not_flower",
        )
    ]


def _backbone_rows(result: dict[str, Any]) -> list[Row]:
    options = result["options"]

    def cell(name: str) -> str:
        r = options[name]
        return (
            f"{name}: macro-F1 {r['f1_macro_mean']:.3f}, unknown species {r['unknown_refused']:.1%} refused "
            f"(AUROC {r['unknown_auroc']:.3f}), not a flower {r['nonflower_refused']:.1%}, "
            f"{fmt(r['batch1_ms'])} ms, {fmt(r['graph_mb'])} MB"
        )

    shipped = next(name for name in options if "shipped" in name)
    best = max((name for name in options if name != shipped), key=lambda name: options[name]["unknown_auroc"])
    return [
        (
            "photo backbone options (#12): the shipped one against the best other by unknown-species AUROC",
            cell(shipped),
            cell(best),
            "reported (every option: benchmarks/RESULTS.md)",
            None,
            "backbones",
        )
    ]


def _soak_rows(soak_r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [
        (
            f"soak, {fmt(soak_r['seconds'], 0)} s scheduled at {fmt(soak_r['target_rate'], 0)} req/s (mixed)",
            f"{soak_r['errors']} errors of {soak_r['requests']:,}, {fmt(soak_r['achieved_rate'], 0)} req/s achieved "
            f"over {fmt(soak_r['elapsed_s'])} s, p99 {fmt(soak_r['p99_ms'])} ms from the scheduled time",
            f"RSS {fmt(soak_r['rss_start_mb'], 0)} -> {fmt(soak_r['rss_end_mb'], 0)} MB"
            + (
                f"; CPU: server {fmt(soak_r['server_cpu_cores'])}, clients {fmt(soak_r['client_cpu_cores'])} of 2 cores"
                if "client_cpu_cores" in soak_r
                else ""
            ),
            "0 errors, kept to the schedule",
            soak_r["errors"] == 0 and not soak_r["fell_behind"],
            "soak",
        )
    ]
    if "hammer_statuses" in soak_r:
        h = soak_r["hammer_statuses"]
        total = sum(h.values())
        rows.append(
            (
                "an abusive client hammering /feedback during the soak",
                f"{h.get('429', 0):,} of {total:,} refused with 429, {h.get('201', 0)} stored; "
                f"inbox {soak_r['inbox_bytes'] / 1e6:.1f} MB of {soak_r['inbox_quota_bytes'] / 1e6:.0f} MB",
                "the other clients' errors are the soak row's",
                "others see 0 errors, inbox within quota",
                soak_r["errors"] == 0 and soak_r["inbox_bytes"] <= soak_r["inbox_quota_bytes"],
                "soak",
            )
        )
    return rows


def _monitor_rows(scale: dict[str, Any]) -> list[Row]:
    runs = scale["runs"]
    big, small = runs["1000000"], runs["100000"]
    rows: list[Row] = [
        (
            "`bunga monitor` over 1,000,000 logged predictions (petal length shifted +1 cm)",
            f"{fmt(big['seconds'])} s; flagged {', '.join(big['flagged']) or 'nothing'}",
            f"100,000: {fmt(small['seconds'])} s",
            "< 30 s, flags petal_length only",
            big["seconds"] < 30 and big["flagged"] == ["petal_length"],
            "monitor_scale",
        ),
        (
            "`bunga monitor` peak memory, 1,000,000 vs 100,000 logged predictions",
            f"{fmt(big['peak_rss_mb'], 0)} MB",
            f"{fmt(small['peak_rss_mb'], 0)} MB: {big['peak_rss_mb'] / small['peak_rss_mb']:.2f}x",
            "bounded: <= 1.25x for 10x the rows",
            big["peak_rss_mb"] <= 1.25 * small["peak_rss_mb"],
            "monitor_scale",
        ),
    ]
    ev = scale.get("evidently")
    if ev:
        rows.append(
            (
                "the same drift question on the same 1,000,000 rows: `bunga monitor` vs Evidently's data drift preset",
                f"{fmt(big['seconds'])} s; flagged {', '.join(big['flagged'])}",
                f"{ev['version']}: {fmt(ev['seconds'])} s ({fmt(ev['load_s'])} s reading the CSV, "
                f"{fmt(ev['report_s'])} s the report); flagged "
                f"{', '.join(ev['flagged']) or 'nothing'}: {ev['seconds'] / big['seconds']:.1f}x bunga's time",
                "faster than Evidently, the same features flagged",
                big["seconds"] < ev["seconds"] and big["flagged"] == ev["flagged"],
                "monitor_scale",
            )
        )
    return rows


def summary() -> str:
    """The performance page's table (docs/performance.md): each target, bunga's number, the comparison, the verdict.

    A row whose result was measured on other code than this checkout says "stale" instead of a verdict.
    """
    rows: list[Row] = []
    builders = (
        ("api_throughput", _api_rows),
        ("api_throughput", _log_rows),
        ("photo_latency", _photo_rows),
        ("photo_batching", _batching_rows),
        ("photo_int8", _int8_rows),
        ("memory", _memory_rows),
        ("pipeline", _pipeline_rows),
        ("train_scale", _scale_rows),
        ("photo_quality", _quality_rows),
        ("not_flower", _not_flower_rows),
        ("backbones", _backbone_rows),
        ("soak", _soak_rows),
        ("monitor_scale", _monitor_rows),
    )
    for name, build in builders:
        result = load(name)
        if result and not result.get("skipped"):
            rows += build(result)
    stale = staleness()

    def verdict(ok: bool | None, source: str) -> str:
        if source in stale:
            return "stale"
        return "-" if ok is None else "yes" if ok else "**no**"

    lines = table(
        ("measure", "bunga", "compared with", "target", "met"), ((*row[:4], verdict(*row[4:])) for row in rows)
    )
    short = [row[0] for row in rows if row[4] is False and row[5] not in stale]
    if short:
        lines += ["", "Where bunga falls short of a target: " + "; ".join(short) + "."]
    lines += [
        "",
        "Peak memory of a command (the merge, `bunga monitor`, Evidently) is its own `ru_maxrss`, read by a "
        "small launcher that forks and execs it (benchmarks/peak.py), so the runner's pages are not counted; "
        "the launcher's own interpreter (about 10 MB) is the floor.",
    ]
    if stale:
        lines += [
            "",
            "Stale or failed results (rerun `make bench`): " + "; ".join(f"{k}: {v}" for k, v in stale.items()) + ".",
        ]
    return "\n".join(lines)


def update_performance_page() -> None:
    """Write the table between the markers of the site's performance page (docs/performance.md)."""
    readme = ROOT / "docs" / "performance.md"
    text = readme.read_text()
    start, end = "<!-- performance:start -->", "<!-- performance:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{summary()}\n{end}{tail}")
