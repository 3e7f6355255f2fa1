"""Starting and stopping the servers the benchmarks compare, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from benchmarks.harness.common import WORK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process; ``rss_mb`` sums the whole process tree (workers included)."""

    def __init__(
        self,
        name: str,
        args: list[str],
        ready_path: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 180,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [a.replace("{port}", str(self.port)) for a in args]
        WORK.mkdir(parents=True, exist_ok=True)
        self.log = WORK / f"{name}.log"
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # mlflow execs uvicorn
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, "PATH": path, "BUNGA_MONITOR_DB": str(WORK / f"{name}-monitor.db"), **(env or {})},
            cwd=cwd,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{name} did not start: {self.log.read_text()[-2000:]}")

    def rss_mb(self) -> float:
        """Resident memory of the whole process tree (launchers included; shared pages counted twice)."""
        root = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20

    def cpu_seconds(self) -> float:
        """User and system CPU seconds used so far by the whole process tree."""
        root = psutil.Process(self.proc.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])

    def memory_mb(self) -> dict[str, float]:
        """RSS of the process that listens on the port (the server itself, without its launcher) and
        the proportional set size (PSS: shared pages split between sharers) of the whole tree."""
        root = psutil.Process(self.proc.pid)
        tree = [root, *root.children(recursive=True)]
        listener = next(
            (
                p
                for p in tree
                if any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in p.net_connections("tcp"))
            ),
            root,
        )
        return {
            "server_rss_mb": listener.memory_info().rss / 2**20,
            "tree_pss_mb": sum(p.memory_full_info().pss for p in tree) / 2**20,
            "tree_rss_mb": sum(p.memory_info().rss for p in tree) / 2**20,
            "processes": len(tree),
        }

    def stop(self) -> None:
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def mlflow_serve(
    name: str, version: str, workers: int, env: dict[str, str], model: str = "bunga-measurements"
) -> Server:
    """`mlflow models serve --env-manager local` on a registered model version."""
    argv = python(
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{model}/{version}",
        "--env-manager",
        "local",
        "-p",
        "{port}",
        "-w",
        str(workers),
        "-h",
        "127.0.0.1",
    )
    return Server(name, argv, "/ping", env={**env, "MLFLOW_DISABLE_TELEMETRY": "true"})


def peer_venv(name: str, packages: list[str], warm: str, env: dict[str, str] | None = None) -> Path:
    """The python of a peer's own venv under the work folder (made once, from the package index),
    so a peer's dependencies never touch bunga's. ``warm`` is imported once after the install: the
    first import compiles the modules to bytecode, which no user pays twice."""
    venv = WORK / name
    interpreter = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(interpreter), "-m", "pip", "install", "--quiet", *packages], check=True)
        (venv / ".ready").touch()
    subprocess.run([str(interpreter), "-c", f"import {warm}"], check=True, env={**os.environ, **(env or {})})
    return interpreter


BENTOML = ["bentoml==1.4.40", "onnxruntime", "numpy"]


def bentoml_serve(name: str, graph: Path, classes: list[str], workers: int) -> Server:
    """BentoML 1.4 (its own venv) serving ``graph`` with onnxruntime: benchmarks/bentoml_service.py."""
    interpreter = peer_venv("bentoml-venv", BENTOML, "bentoml", {"BENTOML_DO_NOT_TRACK": "True"})
    service = Path(__file__).resolve().parent.parent / "serving"  # where bentoml_service.py lives
    argv = [str(interpreter), "-m", "bentoml", "serve", "bentoml_service:Flowers", "--port", "{port}"]
    env = {
        "BUNGA_BENCH_ONNX": str(graph),
        "BUNGA_BENCH_CLASSES": json.dumps(classes),
        "BUNGA_BENCH_WORKERS": str(workers),
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_HOME": str(WORK / "bentoml-home"),
    }
    return Server(name, [*argv, "--host", "127.0.0.1"], "/readyz", env=env, cwd=service)
