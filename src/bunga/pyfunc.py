"""The registered photo model as MLflow loads it: ``mlflow.pyfunc.load_model("models:/bunga-photos@champion")``
takes photos as a user has them (a DataFrame column ``path`` of file paths, or ``image`` of bytes) and
answers as ``/predict/image`` does (band, species, top candidates with their names, the run), through
the same ``Predictor`` and rules the server uses. The bunga package travels with the model
(``code_paths``), the species' names with it as an artifact; ``mlflow models serve --env-manager
local`` serves it."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from bunga.catalog import Catalog
from bunga.imaging import photo_tensor
from bunga.predict import Predictor

MAX_PIXELS = 40_000_000  # as the service decodes (BUNGA_SERVE_MAX_PIXELS' default)
OUTPUT_COLUMNS = (
    "band",
    "species",
    "recognised",
    "outcome",
    "top_species",
    "top_names",
    "top_probabilities",
    "candidates",
    "family",
    "model_name",
    "model_run_id",
)


def signature() -> Any:
    """Inputs: ``path`` (a photo file) or ``image`` (its bytes), one per row; outputs: one answer per row."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    inputs = Schema([ColSpec("string", "path", required=False), ColSpec("binary", "image", required=False)])
    outputs = Schema(
        [
            ColSpec("string", "band"),
            ColSpec("string", "species", required=False),
            ColSpec("boolean", "recognised"),
            ColSpec("string", "outcome"),
            ColSpec(Array("string"), "top_species"),
            ColSpec(Array("string"), "top_names"),
            ColSpec(Array("double"), "top_probabilities"),
            ColSpec(Array("string"), "candidates"),
            ColSpec("string", "family", required=False),
            ColSpec("string", "model_name"),
            ColSpec("string", "model_run_id", required=False),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


class PhotoModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """bunga's photo bundle behind MLflow's pyfunc interface."""

    def load_context(self, context: Any) -> None:
        """Load the bundle (graph + card) and the species' names."""
        self.predictor = Predictor(Path(context.artifacts["bundle"]))
        self.names: dict[str, dict[str, str]] = json.loads(Path(context.artifacts["names"]).read_text("utf-8"))

    def _photo(self, row: dict[str, Any]) -> bytes | Path:
        image, path = row.get("image"), row.get("path")
        if isinstance(image, bytes | bytearray) and image:
            return bytes(image)
        if isinstance(path, str) and path:
            return Path(path)
        raise ValueError("each row needs a photo: a file path in 'path' or its bytes in 'image'")

    # no type hints: MLflow would read them as a schema of its own (the signature is given at logging)
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """One answer per row, as /predict/image answers (``k`` in ``params``: candidates listed, 3)."""
        import numpy as np
        import pandas as pd

        k = int((params or {}).get("k", 3))
        rows = model_input.to_dict("records")
        size = self.predictor.input_size
        batch = np.stack([photo_tensor(self._photo(r), MAX_PIXELS, 8, size) for r in rows]).astype(np.float32)
        card = self.predictor.card
        out = []
        for answer in self.predictor.answers(self.predictor.score_photos(batch), k):
            families = {self.names.get(s, {}).get("famili", "") for s in answer.candidates}
            (family,) = families if len(families) == 1 else ("",)
            out.append(
                {
                    "band": answer.band,
                    "species": answer.species,
                    "recognised": answer.recognised,
                    "outcome": answer.outcome,
                    "top_species": [s for s, _ in answer.top],
                    "top_names": [self.names.get(s, {}).get("nama", s) for s, _ in answer.top],
                    "top_probabilities": [round(p, 6) for _, p in answer.top],
                    "candidates": answer.candidates,
                    "family": family if family and family != "-" else None,
                    "model_name": card.name,
                    "model_run_id": card.run_id,
                }
            )
        frame = pd.DataFrame(out, columns=list(OUTPUT_COLUMNS)).astype(object)
        return frame.where(frame.notna(), None)  # "no species" is None, as in the server's JSON, not NaN


def _package_copy(target: Path) -> Path:
    """The bunga package without what a model never needs (the page's static files, caches)."""
    source = Path(__file__).resolve().parent
    copy = target / "bunga"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("static", "__pycache__", "*.pyc"))
    return copy


def log_photo_model(bundle: Path, catalog: Catalog, classes: list[str], example: Path, requirements: list[str]) -> str:
    """Log the photo bundle as a pyfunc model in the active run; its URI."""
    names = {
        c: {"nama": catalog.get(c).nama, "name": catalog.get(c).name, "famili": catalog.get(c).famili} for c in classes
    }
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        names_file = Path(tmp) / "names.json"
        names_file.write_text(json.dumps(names, ensure_ascii=False), encoding="utf-8")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=PhotoModel(),
            artifacts={"bundle": str(bundle), "names": str(names_file)},
            code_paths=[str(_package_copy(Path(tmp)))],
            signature=signature(),
            input_example=pd.DataFrame({"image": [example.read_bytes()]}),
            pip_requirements=requirements,
        )
    return str(info.model_uri)
