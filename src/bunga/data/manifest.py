"""The dataset's manifest and version history: digests that identify a dataset by content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bunga.files import atomic_write_text
from bunga.schemas import Manifest

MANIFEST = "manifest.json"
VERSIONS_DIR = "versions"


def combine_digests(manifest: Manifest) -> str:
    """One digest for the whole dataset from the digests of its measurements, photos and catalogue."""
    text = f"measurements:{manifest.measurements_digest}\nphotos:{manifest.photos_digest}\n"
    if manifest.catalog_digest:
        text += f"catalog:{manifest.catalog_digest}\n"
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(dataset_dir: Path, manifest: Manifest) -> bool:
    """Write the manifest atomically and keep a copy per dataset version; True when it changed."""
    path = dataset_dir / MANIFEST
    text = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    previous = path.read_text("utf-8") if path.is_file() else None
    version = dataset_dir / VERSIONS_DIR / f"{manifest.dataset_digest[:16]}.json"
    if not version.is_file():
        atomic_write_text(version, text)
    if previous == text:
        return False
    atomic_write_text(path, text)
    return True
