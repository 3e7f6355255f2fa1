"""Photo signatures for monitoring: the normalised embedding through a fixed random projection to a
few dozen numbers. Part of the exported graph, so serving logs them without torch or the embedding;
`bunga monitor` compares served signatures with a sample from training (MMD)."""

from __future__ import annotations

import numpy as np

from bunga.models.unit_rows import l2_normalise

SIGNATURE_DIM = 32
SIGNATURE_OUTPUT = "signature"
REFERENCE_SAMPLE = 200  # training signatures kept in the model card


def projection(embedding_dim: int, seed: int = 0) -> np.ndarray:
    """The fixed (embedding_dim, SIGNATURE_DIM) projection: seeded, so every model of one backbone
    projects the same way."""
    rng = np.random.default_rng(seed)
    matrix: np.ndarray = (rng.standard_normal((embedding_dim, SIGNATURE_DIM)) / np.sqrt(SIGNATURE_DIM)).astype(
        np.float32
    )
    return matrix


def signatures(embeddings: np.ndarray) -> np.ndarray:
    """Signatures of raw embeddings (as the exported graph computes them)."""
    result: np.ndarray = (l2_normalise(embeddings) @ projection(embeddings.shape[1])).astype(np.float32)
    return result


def reference_sample(embeddings: np.ndarray, seed: int = 0) -> list[list[float]]:
    """Up to REFERENCE_SAMPLE training signatures, rounded for the card."""
    rows = np.random.default_rng(seed).permutation(len(embeddings))[:REFERENCE_SAMPLE]
    return np.round(signatures(embeddings[rows]), 4).tolist()  # type: ignore[no-any-return]
