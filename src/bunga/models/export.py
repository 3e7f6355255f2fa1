"""ONNX export of the measurement models (checked against scikit-learn) and the sessions that run
every graph; the photo backbone graph is built by :mod:`bunga.models.lite_graph`."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bunga.errors import BungaError

TABULAR_TOLERANCE = 1e-5
IMAGE_TOLERANCE = 1e-4


def onnx_session(model: bytes | Path) -> Any:
    """A quiet onnxruntime CPU session for a model's bytes or file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def sklearn_to_onnx(pipeline: Any, check_x: np.ndarray) -> tuple[bytes, float]:
    """Convert a fitted pipeline (input ``float32[N, 4]``, outputs label and probabilities).

    Returns the model bytes and the largest probability difference on ``check_x``; raises when it
    exceeds 1e-5.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # skl2onnx reads attributes sklearn deprecates
        model = to_onnx(
            pipeline,
            initial_types=[("input", FloatTensorType([None, check_x.shape[1]]))],
            options={id(pipeline.steps[-1][1]): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    data = model.SerializeToString()
    x32 = check_x.astype(np.float32)
    onnx_proba = onnx_session(data).run(["probabilities"], {"input": x32})[0]
    diff = float(np.abs(onnx_proba - pipeline.predict_proba(x32)).max()) if len(x32) else 0.0
    if diff > TABULAR_TOLERANCE:
        raise BungaError(f"ONNX export disagrees with scikit-learn by {diff:.2e} (> {TABULAR_TOLERANCE:g})")
    return data, diff
