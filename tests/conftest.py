"""Shared fixtures: sample data copied into tmp_path, synthetic photos, a clean settings cache."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bunga.config import get_settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "collected_data"
SHARED_DATA = ROOT.parent / "shared" / "data" / "tf_flowers"
SHIPPED_PHOTOS = SAMPLE / "foto_contoh"
TEST_CREDIT_LICENCE, TEST_CREDIT_LINK = "CC BY 4.0", "https://example.org/foto/"


def copy_sheets(target: Path, source: Path = SAMPLE) -> Path:
    """The shipped sample sheets (and README) without the shipped photos, as ``target``: most tests
    need only the sheets, and generate their own photos. Only the shipped files are copied, never
    what `make run` or a visitor left in ``collected_data/`` (feedback, labels, photos)."""
    target.mkdir(parents=True, exist_ok=True)
    for shipped in [*sorted(source.glob("*.csv")), source / "README.md"]:
        shutil.copy2(shipped, target / shipped.name)
    return target


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs in its own folder with fresh settings and a private MLflow store."""
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("BUNGA_") or key == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("BUNGA_ARTIFACT_DIR", str(tmp_path / "mlartifacts"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def sample_data(tmp_path: Path) -> Path:
    """A copy of the shipped sample sheets (not the photos) as ``tmp_path/collected_data``."""
    return copy_sheets(tmp_path / "collected_data")


@pytest.fixture(scope="session")
def synthetic_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of synthetic photos, ``<class>/*.jpg``, 12 per class, made once per session."""
    from bunga.data.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic")
    generate(out, per_class=12, seed=1)
    return out


def credit_synthetic_photos(folder: Path) -> None:
    """An ``ATTRIBUTION.md`` crediting each photo under ``folder`` (as a photo collection would)."""
    rows = [
        f"| `{p.relative_to(folder).as_posix()}` | {TEST_CREDIT_LINK}{p.stem} | {TEST_CREDIT_LICENCE} | none |"
        for p in sorted(folder.glob("*/*.jpg"))
    ]
    header = "| file | page | licence | change |\n|---|---|---|---|\n"
    (folder / "ATTRIBUTION.md").write_text("# Credits\n\n" + header + "\n".join(rows) + "\n", encoding="utf-8")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_in_workspace(ws: Path, *commands: list[str]) -> None:
    """Run `bunga` commands in ``ws`` with its own MLflow store (``ws/mlflow.db``), each one required
    to succeed; for session- and module-scoped fixtures, which the per-test isolation does not cover."""
    from typer.testing import CliRunner

    from bunga.cli import app

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws / 'mlflow.db'}")
        mp.setenv("BUNGA_ARTIFACT_DIR", str(ws / "mlartifacts"))
        get_settings.cache_clear()
        runner = CliRunner()
        for argv in commands:
            result = runner.invoke(app, argv)
            assert result.exit_code == 0, result.output
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory: pytest.TempPathFactory, synthetic_photos: Path) -> Path:
    """A workspace where `bunga pipeline` trained both kinds once and `bunga export` wrote
    ``bunga-model/``; MLflow store ``mlflow.db`` inside it. Shared by the serving tests."""

    ws = tmp_path_factory.mktemp("trained")
    copy_sheets(ws / "collected_data")
    shutil.copytree(synthetic_photos, ws / "collected_data" / "staf")
    credit_synthetic_photos(ws / "collected_data" / "staf")
    run_in_workspace(ws, ["pipeline"], ["export", "--out", str(ws / "bunga-model")])
    return ws


@pytest.fixture
def model_dir(trained_workspace: Path, tmp_path: Path) -> Path:
    """A private copy of the exported models (tests may edit or break it)."""
    target = tmp_path / "models"
    shutil.copytree(trained_workspace / "bunga-model", target)
    return target


class LiveServer:
    """A real `bunga serve` process on 127.0.0.1."""

    def __init__(self, env: dict[str, str], args: list[str], cwd: Path, port: int | None = None) -> None:
        import subprocess
        import sys
        import time

        import httpx

        self.port = port or _free_port()  # a given port: the same origin again (its service worker, its storage)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"server-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bunga", "serve", "--port", str(self.port), *args],
            env={**os.environ, **env},
            cwd=cwd,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


@pytest.fixture
def live_server(model_dir: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """`bunga serve` over real HTTP, serving a copy of the exported models, inbox in tmp_path."""
    env = {
        "BUNGA_DATA_DIR": str(tmp_path / "collected_data"),
        "BUNGA_ADMIN_TOKEN": "test-admin-token-123456",
        "BUNGA_FEEDBACK_RATE_PER_MIN": "0",  # these tests load the service hard; the limits have their own
    }
    server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)
    yield server
    server.stop()
