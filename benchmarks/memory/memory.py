"""Memory and install footprint: `bunga serve` with both models loaded against `mlflow models serve`
with the measurement model alone, each as the serving process's RSS (without mlflow's launcher) and
as the proportional set size of its whole process tree; the size of a fresh venv with the serving
install against one with `pip install mlflow`; the `make run` environment without torch against the
same with torch. Run: python -m benchmarks.memory.memory"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness.common import ROOT, WORK, save
from benchmarks.harness.models import ENV, prepare
from benchmarks.harness.servers import Server, mlflow_serve, python
from benchmarks.serving.api_throughput import MLFLOW_BODY, RECORD


def venv_size(name: str, install: list[list[str]], finish: Callable[[Path], None] | None = None) -> float:
    """MB of a fresh venv after ``pip install`` of each argument list (then ``finish``, if given)."""
    folder = WORK / f"venv-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    for args in install:
        subprocess.run([str(folder / "bin" / "pip"), "install", "-q", *args], check=True, capture_output=True)
    if finish is not None:
        finish(folder)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(folder, ignore_errors=True)
    return size / 2**20


EXTENSION = re.compile(r".+\.(cpython-[^.]+|abi3)\.so$")


def slim_runtime_stage(folder: Path) -> None:
    """The serve-deps stage's last step: pip, setuptools, numpy's test suite and onnxruntime's offline
    tooling removed, extension modules stripped of debug symbols, then the stage's import check."""
    python = str(folder / "bin" / "python")
    subprocess.run([python, "-m", "pip", "uninstall", "-y", "-q", "pip", "setuptools"], check=True)
    for tests in [p for p in folder.rglob("tests") if p.is_dir() and "numpy" in p.parts]:
        shutil.rmtree(tests, ignore_errors=True)
    for tooling in ("transformers", "quantization", "tools"):
        for found in folder.glob(f"lib/python3*/site-packages/onnxruntime/{tooling}"):
            shutil.rmtree(found)
    # extension modules only: the shared libraries that auditwheel bundles in *.libs/ are rewritten by
    # patchelf, and strip makes them unloadable ("ELF load command ... not page-aligned")
    libraries = [str(p) for p in folder.rglob("*.so") if EXTENSION.match(p.name) and not p.is_symlink()]
    subprocess.run(["strip", "--strip-unneeded", *libraries], check=True)
    check = (
        "import numpy, onnxruntime, uvloop, httptools, yaml, psycopg2, bunga.serving.app; numpy.ones(3) @ numpy.ones(3)"
    )
    subprocess.run([python, "-c", check], check=True, env={"PATH": os.environ["PATH"]})


def runtime_stage_mb() -> float:
    """The runtime Docker stage's venv, made by the Dockerfile's own steps (serve-deps stage): the
    locked serving requirements, the PostgreSQL driver and bunga without dependencies, then slimmed."""
    install = [["-r", str(ROOT / "requirements" / "serve.txt")], ["psycopg2-binary==2.9.13"], [str(ROOT)]]
    return venv_size("runtime-stage", [["--no-deps", *args] for args in install], slim_runtime_stage)


def run_footprint() -> dict[str, float]:
    """The environment `make run` installs (bunga[serve,image]: merge, train, serve), against the same
    install plus the torch implementation the [image] extra carried before bunga built the backbone
    graph itself (torch==2.13.0, the CPU wheel here, and efficientnet-lite-pytorch)."""
    run = [[f"{ROOT}[serve,image]"]]
    with_torch = [*run, ["torch==2.13.0", "efficientnet-lite-pytorch==0.1.0"]]
    out = {"venv_run_mb": venv_size("run", run), "venv_run_with_torch_mb": venv_size("run-torch", with_torch)}
    out["venv_run_ratio"] = out["venv_run_mb"] / out["venv_run_with_torch_mb"]
    print(out)
    return out


def rss(server: Server, warm: list[tuple[str, dict[str, Any]]]) -> dict[str, float]:
    """Memory after 50 rounds of warm-up requests: the serving process alone, and the tree's PSS."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for _ in range(50):
            for path, kwargs in warm:
                assert http.post(path, **kwargs).status_code == 200, path
    return server.memory_mb()


def main(footprint: bool = True) -> dict[str, Any]:
    from tests.helpers import photo_bytes  # a small synthetic photo

    sys.path.insert(0, str(ROOT))
    folders = prepare()
    out: dict[str, Any] = {}
    bunga = Server(
        "bunga-both",
        python("-m", "bunga", "serve", "--model-dir", str(folders["logreg"]), "--port", "{port}"),
        "/ready",
    )
    try:
        out["bunga_serve_both_models"] = rss(
            bunga,
            [
                ("/predict", {"json": RECORD}),
                ("/predict/image", {"files": {"file": ("a.jpg", photo_bytes(), "image/jpeg")}}),
            ],
        )
    finally:
        bunga.stop()
    mlflow = mlflow_serve("mlflow-serve", "1", 1, ENV)
    try:
        out["mlflow_serve_tabular"] = rss(mlflow, [("/invocations", {"json": MLFLOW_BODY})])
    finally:
        mlflow.stop()
    bunga_mem, mlflow_mem = out["bunga_serve_both_models"], out["mlflow_serve_tabular"]
    out["pss_ratio"] = bunga_mem["tree_pss_mb"] / mlflow_mem["tree_pss_mb"]
    out["server_rss_ratio"] = bunga_mem["server_rss_mb"] / mlflow_mem["server_rss_mb"]
    print(out)
    if footprint:
        out["venv_serve_mb"] = venv_size(
            "serve", [["-r", str(ROOT / "requirements" / "serve.txt")], ["--no-deps", str(ROOT)]]
        )
        out["venv_mlflow_mb"] = venv_size("mlflow", [["mlflow"]])
        out["venv_ratio"] = out["venv_serve_mb"] / out["venv_mlflow_mb"]
        out["runtime_stage_mb"] = runtime_stage_mb()
        out.update(run_footprint())
        print({k: v for k, v in out.items() if k.startswith("venv")})
    save("memory", out)
    return out


if __name__ == "__main__":
    main(footprint="--no-footprint" not in sys.argv)
    sys.exit(0)
