"""benchmarks/RESULTS.md from results/*.json: every benchmark's figures in tables, and which results
do not describe the code checked out (measured on other code, failed, or never stamped)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from benchmarks.harness.common import RESULTS, code_digest


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
    """A benchmark's results, or None when it has none or its last run failed."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return None
    result: dict[str, Any] = json.loads(path.read_text())
    return None if "failed" in result else result


def staleness() -> dict[str, str]:
    """Why each result cannot be trusted for this code: measured on other code, never stamped, or failed."""
    current = code_digest()
    out = {}
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        st = result.get("stamp")
        if "failed" in result:
            out[path.stem] = f"failed on {st['commit'] if st else '?'}: {result['failed']}"
        elif st is None:
            out[path.stem] = "not stamped with a commit (older than the stamping)"
        elif st["code_digest"] != current:
            out[path.stem] = f"measured on other code ({st['commit']}, {st['measured_at']})"
    return out


def ratio_cell(value: float | None, unit: str, target: str) -> str:
    if value is None:
        return "invalid (a series had errors)"
    shown = f"{value:.1f}x" if unit == "x" else f"{value:.0%}"
    return f"{shown} (target {target})"


def render() -> str:
    lines = [
        "# Benchmark results",
        "",
        "Produced by `make bench` (`python -m benchmarks.harness.run`); raw numbers in",
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
            (
                "model, workers",
                "bunga / mlflow serve (c=32)",
                "bunga / mlflow serve, same ONNX graph (c=32)",
                "bunga / FastAPI constant floor, same workers (c=32)",
            ),
            (
                (
                    name,
                    ratio_cell(r["bunga_over_mlflow_c32"], "x", ">= 8x"),
                    ratio_cell(r["bunga_over_mlflow_onnx_c32"], "x", "reported"),
                    ratio_cell(r["bunga_over_fastapi_floor_c32"], "%", ">= 80%"),
                )
                for name, r in api["ratios"].items()
                if "bunga_over_mlflow_c32" in r  # the per-model rows (log_cost_1w has its own table row)
            ),
        )
        errors = [
            f"{name} c={c[1:]}: {v[c]['errors']}" for name, v in api["results"].items() for c in v if v[c]["errors"]
        ]
        if errors:
            lines += ["", "Series with errors or timeouts (not compared with): " + "; ".join(errors) + "."]
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
        b, m = mem["bunga_serve_both_models"], mem["mlflow_serve_tabular"]
        lines += [
            "## Memory and install footprint",
            "",
            f"- `bunga serve` with both models loaded: serving process {fmt(b['server_rss_mb'])} MB RSS, whole tree "
            f"{fmt(b['tree_pss_mb'])} MB PSS ({b['processes']} process(es)). `mlflow models serve` with the measurement "
            f"model alone: serving process {fmt(m['server_rss_mb'])} MB RSS, whole tree {fmt(m['tree_pss_mb'])} MB PSS "
            f"({m['processes']} processes, launcher included). Ratios: PSS {mem['pss_ratio']:.2f}, serving process "
            f"{mem['server_rss_ratio']:.2f} (target <= 0.33).",
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
                "target < 0.10: " + ("met" if pp["warm_over_cold"] < 0.10 else "missed") + ")."
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
    scale = load("train_scale")
    if scale and not scale.get("skipped") and "runs" in scale:
        lines += ["Photo training at scale (`bunga merge` + `bunga train --kind photos`, cold embedding cache):", ""]
        rows = [
            (
                f"{r['photos']:,}",
                fmt(r["merge_s"]),
                fmt(r["train_s"]),
                fmt(r["stages"]["embeddings_s"]),
                fmt(r["train_peak_rss_mb"], 0),
                fmt(r["cache_mb"]),
            )
            for r in (scale["runs"][k] for k in sorted(scale["runs"], key=int))
        ]
        lines += table(("photos", "merge s", "train s", "embeddings s", "train peak MB", "cache MB"), rows)
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
                "Unknown species (each class held out in turn; refused at the threshold that keeps 95 % of the known test photos):",
                "",
            ]
            lines += table(
                ("score", "AUROC", "unknown photos refused"),
                ((method, f"{r['auroc']:.3f}", f"{r['refused']:.1%}") for method, r in quality["open_set"].items()),
            )
        lines.append("")
    nf = load("not_flower")
    if nf and not nf.get("skipped") and "failed" not in nf:
        lines += [
            '"This is not a flower" (the rule fitted on 4 folds of tf_flowers, measured on the fifth, '
            f"setting {nf['max_refused_setting']:.0%}): {nf['known_kept']:.1%} of known flowers kept, "
            f"{nf['nonflower_refused']:.1%} of {nf['nonflowers']} non-flower photos refused. Photos of a "
            'species the model was not taught, called "not a flower" (they should be "unknown species"):',
            "",
        ]
        lines += table(
            ("held-out species", "called not a flower"),
            ((k, f"{v:.1%}") for k, v in nf["unknown_species_called_not_flower"].items()),
        )
        lines.append("")
    options = load("backbones")
    if options and not options.get("skipped"):
        lines += [
            "Backbone options (`python -m benchmarks.quality.backbones`; each built by bunga from its PyPI weight file; "
            "several side by side: embeddings joined, ImageNet probabilities averaged). Macro-F1: 5-fold CV, "
            "linear SVM C=1; unknown species: each class held out in turn, refused at 95 % of known kept "
            f"(max_prob); not a flower: {options['nonflowers']} dev photos, as above; latency: the backbones "
            "at batch 1 with serving's onnxruntime settings:",
            "",
        ]
        lines += table(
            (
                "backbones",
                "macro-F1",
                "unknown AUROC",
                "unknown refused",
                "not a flower refused",
                "known kept",
                "batch-1 ms",
                "graph MB",
            ),
            (
                (
                    name,
                    f"{r['f1_macro_mean']:.3f} ± {r['f1_macro_std']:.3f}",
                    f"{r['unknown_auroc']:.3f}",
                    f"{r['unknown_refused']:.1%}",
                    f"{r['nonflower_refused']:.1%}",
                    f"{r['known_kept']:.1%}",
                    fmt(r["batch1_ms"]),
                    fmt(r["graph_mb"]),
                )
                for name, r in options["options"].items()
            ),
        )
        lines.append("")
    garden = load("garden_bands")
    if garden and not garden.get("skipped"):
        lines += [
            f"Untaught species and answer bands on a garden-like protocol (`python -m benchmarks.quality.garden_bands`; "
            f"{garden['protocol']}; what `bunga train` fits; test mix of known and held-out photos weighted 45:37; "
            "mean ± spread over the splits). Oracle: the most known photos sure at 97 % right that a threshold "
            "chosen on the test mix itself would give (the features' limit):",
            "",
        ]
        cell = lambda r, k, pct=True: f"{r[k]['mean']:.1%} ± {r[k]['std']:.1%}" if pct else f"{r[k]['mean']:.3f}"  # noqa: E731
        lines += table(
            (
                "backbones",
                "unknown refused (95 % kept)",
                "AUROC",
                "sure right",
                "known sure",
                "oracle known sure",
                "right without bands",
            ),
            (
                (
                    name,
                    cell(r, "unknown_refused_at_95_kept"),
                    cell(r, "unknown_auroc", False),
                    cell(r, "sure_right"),
                    cell(r, "known_sure"),
                    cell(r, "oracle_known_sure_at_97"),
                    cell(r, "recognised_right"),
                )
                for name, r in garden.items()
                if isinstance(r, dict) and "unknown_auroc" in r
            ),
        )
        lines.append("")
    observed = load("observations")
    if observed and not observed.get("skipped") and not observed.get("failed"):
        lines += [
            f"Several photos of one plant (`python -m benchmarks.quality.observations`; {observed['protocol']}): "
            "mean (std) over the splits; a split where a count's sure threshold was never met counts 0 sure, and "
            "the share right is averaged over the splits that answered sure:",
            "",
        ]

        def ms(r: dict[str, Any], key: str) -> str:
            return f"{r[key]['mean']:.3f} ({r[key]['std']:.3f})"

        lines += table(
            ("photos", "known sure", "sure answers right", "known kept", "untaught refused"),
            (
                (name, ms(r, "known_sure"), ms(r, "sure_right"), ms(r, "known_kept"), ms(r, "unknown_refused"))
                for name, r in observed.items()
                if isinstance(r, dict) and "known_sure" in r
            ),
        )
        lines.append("")
    loop = load("review_loop")
    if loop and not loop.get("skipped"):
        lines += [
            f"The review loop (`python -m benchmarks.garden.review_loop`; {loop['protocol']}): macro-F1 of the champion "
            "on the other source after N reviewed photos per species went through the review path and "
            "`bunga pipeline --if-needed`:",
            "",
        ]
        lines += table(
            ("reviewed per species", "macro-F1 on the other source", "new champion"),
            (
                (str(r["reviewed_per_species"]), f"{r['macro_f1']:.3f}", "yes" if r["promoted"] else "no")
                for r in loop["steps"]
            ),
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
        behind = "fell behind the schedule" if soak_r["fell_behind"] else "kept to the schedule"
        lines += [
            "## Soak",
            "",
            f"{soak_r['requests']:,} requests scheduled at {fmt(soak_r['target_rate'], 0)} req/s for "
            f"{fmt(soak_r['seconds'], 0)} s (90 % /predict, 10 % /predict/image); measured "
            f"{fmt(soak_r['elapsed_s'])} s wall-clock, {fmt(soak_r['achieved_rate'], 0)} req/s achieved, the server "
            f"{behind} (latest send {fmt(soak_r['max_send_lateness_ms'])} ms after its time): {soak_r['errors']} errors, "
            f"latency from the scheduled time p50 {fmt(soak_r['p50_ms'], 2)} ms, p99 {fmt(soak_r['p99_ms'], 2)} ms, "
            f"RSS {fmt(soak_r['rss_start_mb'])} -> {fmt(soak_r['rss_end_mb'])} MB.",
            "",
        ]
    stale = staleness()
    if stale:
        lines += ["## Results that do not describe this code", ""]
        lines += [f"- `{name}`: {why}" for name, why in stale.items()]
        lines.append("")
    return "\n".join(lines) + "\n"
