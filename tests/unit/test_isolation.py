"""Tests never depend on what `make run` or `make pipeline` left in the checkout: the sample a test
copies is the shipped files only, and every setting points into the test's own folder."""

from __future__ import annotations

import os
from pathlib import Path

from bunga.config import get_settings
from tests.conftest import copy_sheets


def test_a_copied_sample_holds_only_the_shipped_files(tmp_path: Path) -> None:
    """A checkout after `make run`: visitors' feedback, curators' labels and photos sit beside the
    shipped sheets. A test's copy of the sample takes none of them."""
    checkout = tmp_path / "checkout" / "collected_data"
    for name in ("a.csv", "b.csv", "README.md", "feedback/photos/x.jpg", "labels/l.csv", "foto_sintetis/r/p.jpg"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(name)
    (checkout / "foto_contoh" / "daisy").mkdir(parents=True)
    copied = copy_sheets(tmp_path / "copy", checkout)
    assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*")) == ["README.md", "a.csv", "b.csv"]


def test_every_setting_points_into_the_tests_own_folder(tmp_path: Path) -> None:
    assert not [k for k in os.environ if k.startswith("BUNGA_") and k != "BUNGA_ARTIFACT_DIR"]
    settings = get_settings()
    for path in (settings.data_dir, settings.dataset_dir, settings.cache_dir, settings.artifact_dir):
        assert path.resolve().is_relative_to(tmp_path), path
    assert Path(settings.monitor_db).resolve().is_relative_to(tmp_path)
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
