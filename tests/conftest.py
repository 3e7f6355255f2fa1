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
    """A copy of the shipped sample sheets as ``tmp_path/collected_data``."""
    target = tmp_path / "collected_data"
    shutil.copytree(SAMPLE, target)
    return target


@pytest.fixture(scope="session")
def synthetic_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of synthetic photos, ``<class>/*.jpg``, 12 per class, made once per session."""
    from bunga.data.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic")
    generate(out, per_class=12, seed=1)
    return out
