"""The reference profile made at training time from the training split: what the model's inputs and
answers looked like then. Checks compare a window of served predictions against it; they never
reload the training data."""

from __future__ import annotations

import numpy as np

from bunga.schemas import ReferenceProfile

QUANTILES = 101  # 0, 1, ..., 100th percentile of each measurement: enough for PSI bins and a KS test


def reference_profile(
    classes: list[str],
    labels: np.ndarray,
    probs: np.ndarray,
    features: dict[str, np.ndarray] | None = None,
    recognised: np.ndarray | None = None,
    signature_sample: list[list[float]] | None = None,
) -> ReferenceProfile:
    """Class mix of the training split (``labels``), the model's answers on data it was not fitted on
    (``probs``, ``recognised``: the held-out split) and, for measurements, the training inputs."""
    priors = {c: float((labels == c).mean()) for c in classes}
    top = probs.max(axis=1)
    quantiles = {
        name: np.quantile(values.astype(float), np.linspace(0, 1, QUANTILES)).round(6).tolist()
        for name, values in (features or {}).items()
    }
    return ReferenceProfile(
        n=len(probs),
        class_priors=priors,
        top_prob_quantiles=np.quantile(top, np.linspace(0, 1, 21)).round(6).tolist(),
        top_prob_mean=float(top.mean()),
        recognised_rate=float(recognised.mean()) if recognised is not None and len(recognised) else 1.0,
        feature_quantiles=quantiles,
        signature_sample=signature_sample or [],
    )
