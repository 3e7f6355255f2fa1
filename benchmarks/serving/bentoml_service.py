"""BentoML 1.4 serving bunga's measurement champion: the very ONNX graph `bunga serve` runs, with
onnxruntime, so the comparison is between the servers. Runs in its own venv (see
benchmarks/api_throughput.py); its settings come from the environment:
BUNGA_BENCH_ONNX (the graph), BUNGA_BENCH_CLASSES (JSON list), BUNGA_BENCH_WORKERS.
Request body: one record, the same JSON bunga's /predict takes."""

from __future__ import annotations

import json
import os
from typing import Any

import bentoml  # type: ignore[import-not-found]
import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]


@bentoml.service(
    workers=int(os.environ.get("BUNGA_BENCH_WORKERS", "1")),
    logging={"access": {"enabled": False}},  # as `bunga serve` runs by default: no line per request
)
class Flowers:
    """Species probabilities from four measurements (cm)."""

    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # as bunga opens a measurement graph
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(os.environ["BUNGA_BENCH_ONNX"], options, providers=["CPUExecutionProvider"])
        self.classes: list[str] = json.loads(os.environ["BUNGA_BENCH_CLASSES"])

    @bentoml.api
    def predict(
        self, sepal_length: float, sepal_width: float, petal_length: float, petal_width: float
    ) -> dict[str, Any]:
        """The species and every class's probability."""
        x = np.array([[sepal_length, sepal_width, petal_length, petal_width]], dtype=np.float32)
        row = self.session.run(["probabilities"], {"input": x})[0][0]
        best = int(np.argmax(row))
        return {
            "species": self.classes[best],
            "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, row, strict=True)},
        }
