"""One workspace of trained and exported models shared by the serving benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.harness.common import ROOT, WORK, code_digest
from bunga.schemas import FEATURES

SPACE = WORK / "models"
ENV = {"MLFLOW_TRACKING_URI": f"sqlite:///{SPACE / 'mlflow.db'}", "BUNGA_ARTIFACT_DIR": str(SPACE / "mlartifacts")}


def in_space(what: str, *args: str) -> str:
    """Run this interpreter with ``args`` in the workspace against its MLflow store; its stdout."""
    result = subprocess.run(
        [sys.executable, *args], cwd=SPACE, env={**os.environ, **ENV}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what}: {result.stderr[-2000:]}")
    return result.stdout


def bunga(*args: str) -> str:
    return in_space(f"bunga {' '.join(args)}", "-m", "bunga", *args)


def prepare() -> dict[str, Path]:
    """Versions 1 (logistic regression) and 2 (random forest) of the measurement model and version 1
    of a photo model (the shipped real photo sample), each exported to its own folder."""
    done = SPACE / "exports" / "ready"
    folders = {name: SPACE / "exports" / name for name in ("logreg", "random_forest")}
    if done.exists() and done.read_text() == code_digest():  # made by this very code
        return folders
    shutil.rmtree(SPACE, ignore_errors=True)
    SPACE.mkdir(parents=True)
    shutil.copytree(ROOT / "collected_data", SPACE / "collected_data")
    bunga("merge")
    for version, family in (("1", "logreg"), ("2", "random_forest")):
        bunga("train", "--kind", "measurements", "--model", family)
        bunga("export", "--kind", "measurements", "--model", version, "--out", str(folders[family]))
    bunga("train", "--kind", "photos")
    for family in folders:
        bunga("export", "--kind", "photos", "--model", "1", "--out", str(folders[family]))
    register_onnx_peer(folders["logreg"] / "measurements" / "model.onnx")
    done.write_text(code_digest())
    return folders


ONNX_PEER = "bunga-measurements-onnx"


def register_onnx_peer(graph: Path) -> None:
    """The very ONNX graph bunga serves, logged with MLflow's own onnx flavour as ``ONNX_PEER`` v1, so
    `mlflow models serve` can run it: the same runtime behind MLflow's server."""
    script = f"""
import mlflow, mlflow.onnx, numpy as np, onnx, pandas as pd
mlflow.set_experiment("onnx-peer")
with mlflow.start_run():
    model = onnx.load({str(graph)!r})
    keep = [o for o in model.graph.output if o.name == "probabilities"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    mlflow.onnx.log_model(model, name="model", registered_model_name={ONNX_PEER!r},
                          input_example=pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns={list(FEATURES)!r}))
"""
    # The same columns as the other peers' requests, as doubles (JSON numbers arrive as float64; MLflow's
    # onnx flavour casts them to the graph's float32 itself): a float32 example made every request a 400.
    # Only the probabilities output: MLflow's onnx flavour builds one DataFrame from all outputs and
    # fails (500) when their lengths differ (label: 1 value, probabilities: 3).
    in_space("registering the onnx peer", "-c", script)
