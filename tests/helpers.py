"""Small builders shared by tests: photos as bytes."""

from __future__ import annotations

import io
import random
import signal
import subprocess
import time
from collections.abc import Callable

from bunga.data.synthetic import STYLES, draw_flower


def photo_bytes(style: str = "sintetis_merah", seed: int = 0, fmt: str = "JPEG", size: int = 128) -> bytes:
    """A synthetic flower photo encoded as ``fmt``."""
    buffer = io.BytesIO()
    draw_flower(STYLES[style], random.Random(f"t{seed}"), size).save(buffer, fmt)
    return buffer.getvalue()


def kill_when(proc: subprocess.Popen[bytes], seen: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``seen()`` is true (polled every millisecond).

    Fails the test when the process ends first or the condition never holds: a kill that lands
    before or after the write it is meant to interrupt proves nothing.
    """
    deadline = time.monotonic() + timeout_s
    while not seen():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before the kill point was reached")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError("the kill point was never reached")
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def onnx_scores_graph(features: int, classes: int) -> bytes:
    """A valid ONNX graph named like a bunga model (input ``input``, output ``probabilities``) whose
    outputs are raw scores, not probabilities: it loads in onnxruntime and fails only the smoke check."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((features, classes), 2.0, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["probabilities"])],
        "scores",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, classes])],
        initializer=[weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def onnx_constant_graph(features: int, values: list[float]) -> bytes:
    """A valid ONNX graph named like a bunga measurement model whose ``probabilities`` are ``values``
    for every input (the input only sets the batch size)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    zeros = numpy_helper.from_array(np.zeros((features, len(values)), dtype=np.float32), "zeros")
    constant = numpy_helper.from_array(np.array(values, dtype=np.float32), "constant")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "zeros"], ["nothing"]),
            helper.make_node("Add", ["nothing", "constant"], ["probabilities"]),
        ],
        "constant",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, len(values)])],
        initializer=[zeros, constant],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def keep_outputs(graph: bytes, names: list[str]) -> bytes:
    """The same ONNX graph with only the outputs ``names`` left (the rest of its nodes unchanged)."""
    import onnx

    model = onnx.load_from_string(graph)
    kept = [o for o in model.graph.output if o.name in names]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return bytes(model.SerializeToString())


def missing(what: str) -> None:
    """Skip a test whose requirement is absent here, but fail it in CI (``CI`` set), where .ci/run
    installs everything: a skip there would hide lost coverage."""
    import os

    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI: .ci/run must provide it")
    pytest.skip(f"{what} is missing here")
