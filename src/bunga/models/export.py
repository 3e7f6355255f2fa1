"""ONNX export of both model kinds, each checked against the framework it came from."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bunga.errors import BungaError
from bunga.files import atomic_write_bytes
from bunga.imaging import INPUT_SIZE

TABULAR_TOLERANCE = 1e-5
IMAGE_TOLERANCE = 1e-4


def onnx_session(model: bytes | Path) -> Any:
    """A quiet onnxruntime CPU session for a model's bytes or file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def export_once(path: Path, module: Callable[[], Any], outputs: list[str]) -> float:
    """Export the torch module ``module()`` builds to ``path`` unless it is there already, checked
    against torch on a fixed probe; the difference is kept beside it and returned."""
    check = path.with_suffix(".torch-diff")
    if not path.is_file() or not check.is_file():
        probe = np.random.default_rng(0).normal(0, 0.6, (2, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
        tmp = path.with_name(f".{path.name}.tmp")
        diff = torch_to_onnx(module(), probe, outputs, tmp)
        tmp.replace(path)
        atomic_write_bytes(check, f"{diff!r}".encode())
    return float(check.read_text())


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


def torch_to_onnx(module: Any, check_x: np.ndarray, output_names: list[str], path: Path) -> float:
    """Export a torch module with a dynamic batch axis; returns the largest output difference."""
    import torch

    example = torch.from_numpy(check_x[:1])
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant-folding notes from the TorchScript exporter
        torch.onnx.export(
            module,
            (example,),
            buffer,
            input_names=["input"],
            output_names=output_names,
            dynamic_axes={"input": {0: "batch"}, **{name: {0: "batch"} for name in output_names}},
            opset_version=17,
            dynamo=False,
        )
    data = buffer.getvalue()
    with torch.no_grad():
        expected = module(torch.from_numpy(check_x))
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = onnx_session(data).run(output_names, {"input": check_x})
    diff = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected, strict=True))
    if diff > IMAGE_TOLERANCE:
        raise BungaError(f"ONNX export disagrees with torch by {diff:.2e} (> {IMAGE_TOLERANCE:g})")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return diff
