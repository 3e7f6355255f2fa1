"""The multi-machine layout on 127.0.0.1 without Docker: a throw-away PostgreSQL cluster, a central
`mlflow server` on it with proxied artifacts, a trainer in its own process, and two stateless API
replicas that resolve `champion` from the server over its REST API."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import LiveServer, copy_sheets

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
TOKEN = "multi-machine-token-123456"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing: .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL server binaries are not installed")
    return Path(found[-1]).parent


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL cluster in a temp dir; yields its SQLAlchemy URL."""
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="bunga-pg-"))  # pytest's own temp tree is private to root
    os.chmod(root, 0o755)
    data = root / "pg"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = _port()
    subprocess.run(
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -h 127.0.0.1 -k {data}"
    subprocess.run(
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(data / "log"), "start"]),
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mlflow_server(postgres: str, tmp_path: Path) -> Iterator[str]:
    port = _port()
    artifacts = tmp_path / "artifacts"
    log = (tmp_path / "mlflow.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            postgres,
            "--serve-artifacts",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start: " + (tmp_path / "mlflow.log").read_text()[-3000:])
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _bunga(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "bunga", *args],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_trainers_and_replicas_share_one_registry(mlflow_server: str, tmp_path: Path) -> None:
    trainer = tmp_path / "trainer"
    copy_sheets(trainer / "collected_data")
    env = {"MLFLOW_TRACKING_URI": mlflow_server}
    _bunga(["pipeline", "--kind", "measurements"], trainer, env)

    replicas = [
        LiveServer(
            {
                **env,
                "BUNGA_ADMIN_TOKEN": TOKEN,
                "BUNGA_SERVE_KINDS": '["measurements"]',
                "BUNGA_CACHE_DIR": str(tmp_path / f"replica{i}"),
            },
            [],
            tmp_path,
        )
        for i in range(2)
    ]
    # a third replica, with two workers, is never told: it polls the registry and converges by itself
    polling = LiveServer(
        {
            **env,
            "BUNGA_SERVE_KINDS": '["measurements"]',
            "BUNGA_CACHE_DIR": str(tmp_path / "replica-polling"),
            "BUNGA_RELOAD_INTERVAL_S": "1",
        },
        ["--workers", "2"],
        tmp_path,
    )
    replicas.append(polling)
    try:
        records = [
            {"sepal_length": float(a), "sepal_width": float(b), "petal_length": float(c), "petal_width": float(d)}
            for a, b, c, d in np.random.default_rng(0).uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5], (40, 4))
        ]
        for replica in replicas:
            models = httpx.get(f"{replica.url}/model").json()["models"]
            assert models["measurements"]["version"] == "1"
        # a second trainer elsewhere trains and promotes a new version on the same server
        second = tmp_path / "trainer2"
        copy_sheets(second / "collected_data")
        _bunga(["merge"], second, env)
        _bunga(["train", "--kind", "measurements"], second, env)
        promoted = _bunga(["promote", "--kind", "measurements"], second, env)
        assert "champion -> v2" in promoted.stdout
        deadline = time.monotonic() + 30
        while True:  # both workers of the polling replica: 20 answers in a row from version 2
            versions = {
                p["model_version"]
                for _ in range(20)
                for p in httpx.post(f"{polling.url}/predict", json=records[:1], timeout=30).json()["predictions"]
            }
            if versions == {"2"}:
                break
            assert time.monotonic() < deadline, f"the polling replica did not converge: {versions}"
            time.sleep(0.5)
        answers = []
        for replica in replicas[:2]:
            reload = httpx.post(
                f"{replica.url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ).json()["results"]
            assert reload == [
                {"kind": "measurements", "status": "swapped", "old_version": "1", "new_version": "2", "error": None}
            ]
            response = httpx.post(f"{replica.url}/predict", json=records, timeout=30).json()["predictions"]
            assert {p["model_version"] for p in response} == {"2"}
            answers.append([p["probabilities"] for p in response])
        assert answers[0] == answers[1]
    finally:
        for replica in replicas:
            replica.stop()
