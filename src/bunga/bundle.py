"""The exported model bundle: ``model.onnx`` + ``bunga.json`` (its ModelCard) in one folder.

This is what training logs to MLflow, what `bunga export` writes, and what serving loads.
"""

from __future__ import annotations

import json
from pathlib import Path

from bunga.errors import BungaError
from bunga.files import atomic_write_bytes, atomic_write_text, sha256_file
from bunga.schemas import ModelCard

MODEL_FILE = "model.onnx"
CARD_FILE = "bunga.json"


def write_bundle(folder: Path, onnx_bytes: bytes, card: ModelCard) -> Path:
    """Write the model and its card; the card records the model's sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / MODEL_FILE, onnx_bytes)
    card = card.model_copy(update={"onnx_sha256": sha256_file(folder / MODEL_FILE)})
    write_card(folder, card)
    return folder


def write_card(folder: Path, card: ModelCard) -> None:
    """Write (or update) the card of a bundle."""
    atomic_write_text(folder / CARD_FILE, json.dumps(card.model_dump(mode="json"), indent=2) + "\n")


def read_bundle(folder: Path) -> tuple[ModelCard, Path]:
    """The card and the model path of a bundle, after checking the model's sha256 against the card."""
    card_path, model_path = folder / CARD_FILE, folder / MODEL_FILE
    if not card_path.is_file() or not model_path.is_file():
        raise BungaError(f"{folder} is not a bunga model folder (needs {MODEL_FILE} and {CARD_FILE})")
    try:
        card = ModelCard.model_validate_json(card_path.read_text("utf-8"))
    except ValueError as err:
        raise BungaError(f"{card_path} is not a valid model card: {str(err).splitlines()[0]}") from err
    if sha256_file(model_path) != card.onnx_sha256:
        raise BungaError(f"{model_path} does not match the sha256 in its card: refusing to load it")
    return card, model_path


def card_json(card: ModelCard) -> str:
    """The card as compact JSON (for tags and logs)."""
    return json.dumps(card.model_dump(mode="json"), separators=(",", ":"))
