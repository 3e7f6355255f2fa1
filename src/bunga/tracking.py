"""The only module that imports MLflow: runs, datasets, logged models, the registry and its aliases."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bunga.errors import BungaError

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network at run time
os.environ.setdefault("DO_NOT_TRACK", "true")
warnings.filterwarnings("ignore", module="mlflow")
import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.ERROR)
logging.getLogger("alembic").setLevel(logging.WARNING)

BUNDLE_PATH = "bunga"
MLFLOW_DIGEST_CHARS = 36  # MLflow's dataset table stores at most 36 characters of a digest
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_\-]{0,29}$")
_DECISION_PREFIX = "bunga.decision."


def validate_name(name: str) -> None:
    """Refuse registered model names that are not plain names."""
    if not _NAME.match(name):
        raise BungaError(f"invalid registered model name {name!r}")


def validate_ref(name: str, ref: str) -> None:
    """Refuse registry names and references that are not plain names, aliases or version numbers."""
    validate_name(name)
    if not (ref.isdigit() or _ALIAS.match(ref)):
        raise BungaError(f"invalid model reference {ref!r}: use an alias (champion) or a version number")


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version."""

    name: str
    version: str
    run_id: str
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    created: int = 0


class RunLog:
    """Logging into one active run."""

    def __init__(self, run: Any) -> None:
        self.run_id: str = run.info.run_id

    def params(self, values: dict[str, Any]) -> None:
        """Log parameters (values longer than MLflow allows are cut)."""
        mlflow.log_params({k: str(v)[:6000] for k, v in values.items()})

    def metrics(self, values: dict[str, float], step: int | None = None) -> None:
        """Log numeric metrics."""
        mlflow.log_metrics({k: float(v) for k, v in values.items()}, step=step)

    def tags(self, values: dict[str, str]) -> None:
        """Set run tags."""
        mlflow.set_tags(values)

    def dict(self, obj: Any, name: str) -> None:
        """Log a JSON artifact."""
        mlflow.log_dict(obj, name)

    def text(self, text: str, name: str) -> None:
        """Log a text artifact."""
        mlflow.log_text(text, name)

    def file(self, path: Path, folder: str | None = None) -> None:
        """Log a file as an artifact."""
        mlflow.log_artifact(str(path), folder)

    def folder(self, path: Path, folder: str) -> None:
        """Log every file of a folder under ``folder``."""
        mlflow.log_artifacts(str(path), folder)

    def dataset(
        self,
        digest: str,
        name: str,
        source: str,
        frame: Any | None = None,
        targets: str | None = None,
        context: str = "training",
    ) -> None:
        """Log the dataset input; its MLflow digest is the merge's dataset digest (first 36 chars)."""
        import mlflow.data
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.pandas_dataset import from_pandas
        from mlflow.data.sources import LocalArtifactDatasetSource

        short = digest[:MLFLOW_DIGEST_CHARS]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "source can be interpreted in multiple ways"
            if frame is not None:
                data: Any = from_pandas(frame, source=source, targets=targets, name=name, digest=short)
            else:
                data = MetaDataset(LocalArtifactDatasetSource(source), name=name, digest=short)
            mlflow.log_input(data, context=context)

    def sklearn_model(self, model: Any, input_example: Any, requirements: list[str]) -> str:
        """Log a scikit-learn model (skops format) with signature and input example; returns its URI."""
        import mlflow.sklearn
        from mlflow.models import infer_signature

        trusted = _skops_trusted(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # fitted on arrays, signature from a frame
            signature = infer_signature(input_example, model.predict(input_example))
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=input_example,
                pip_requirements=requirements,
                skops_trusted_types=trusted or None,
            )
        return str(info.model_uri)

    def onnx_model(self, path: Path, input_example: Any, output_example: Any, requirements: list[str]) -> str:
        """Log an ONNX model with signature and input example; returns its URI."""
        import mlflow.onnx
        import onnx
        from mlflow.models import infer_signature

        info = mlflow.onnx.log_model(
            onnx.load(str(path)),
            name="model",
            signature=infer_signature(input_example, output_example),
            input_example=input_example,
            pip_requirements=requirements,
            save_as_external_data=False,
        )
        return str(info.model_uri)


def _skops_trusted(model: Any) -> list[str]:
    """The types skops will not load by default in our own freshly fitted model, limited to
    scikit-learn's and numpy's (anything else is refused, not trusted)."""
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
    if foreign:
        raise BungaError(f"refusing to trust unexpected types in the model: {', '.join(foreign)}")
    return list(untrusted)


def _create_sqlite_store_atomically(uri: str) -> None:
    """Create a new local SQLite store in a temporary file and rename it into place, so a process
    killed during MLflow's schema migrations never leaves a half-migrated store behind."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if path.exists() or str(path) in {"", ":memory:"}:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.init")
    try:
        MlflowClient(f"sqlite:///{tmp}").search_experiments(max_results=1)
        if not path.exists():
            os.replace(tmp, path)
    except MlflowException as err:
        raise BungaError(f"cannot create the MLflow store {path}: {err.message.splitlines()[0]}") from err
    finally:
        tmp.unlink(missing_ok=True)


class Tracker:
    """Experiments, runs and the model registry of one MLflow tracking store."""

    def __init__(self, tracking_uri: str, artifact_dir: Path) -> None:
        self.uri = tracking_uri
        self.local = not tracking_uri.startswith(("http://", "https://", "databricks"))
        self.artifact_dir = artifact_dir
        _create_sqlite_store_atomically(tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri, tracking_uri)

    def _experiment_id(self, name: str) -> str:
        try:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None:
                return str(experiment.experiment_id)
            location = (self.artifact_dir.resolve() / name).as_uri() if self.local else None
            return str(self.client.create_experiment(name, artifact_location=location))
        except MlflowException as err:
            raise BungaError(f"MLflow at {self.uri} refused: {err.message.splitlines()[0]}") from err
        except OSError as err:
            raise BungaError(f"cannot reach MLflow at {self.uri}: {err}") from err

    @contextmanager
    def run(self, experiment: str, name: str, nested: bool = False) -> Iterator[RunLog]:
        """Start a run (or a nested child of the active run)."""
        experiment_id = self._experiment_id(experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=nested) as run:
            yield RunLog(run)

    # --- registry ------------------------------------------------------------------------------
    def register(self, model_uri: str, name: str, tags: dict[str, str]) -> str:
        """Register a logged model as a new version of ``name``; returns the version number."""
        validate_name(name)
        version = mlflow.register_model(model_uri, name, tags=tags)
        return str(version.version)

    def _info(self, mv: Any) -> VersionInfo:
        return VersionInfo(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or "",
            aliases=list(mv.aliases or []),
            tags=dict(mv.tags or {}),
            created=int(mv.creation_timestamp or 0),
        )

    def version(self, name: str, ref: str) -> VersionInfo | None:
        """The version a reference (alias or number) points at, or None when it points nowhere."""
        validate_ref(name, ref)
        try:
            if ref.isdigit():
                return self._info(self.client.get_model_version(name, ref))
            return self._info(self.client.get_model_version_by_alias(name, ref))
        except MlflowException:
            return None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``."""
        validate_ref(name, alias)
        self.client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias if it exists."""
        validate_ref(name, alias)
        with suppress(MlflowException):
            self.client.delete_registered_model_alias(name, alias)

    def tag_version(self, name: str, version: str, tags: dict[str, str]) -> None:
        """Set tags on a model version."""
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value[:4900])

    def record_decision(self, name: str, record: dict[str, Any]) -> None:
        """Append a promotion decision to the registered model's log (tags are never overwritten:
        each decision gets a key of its own)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        value = json.dumps(record, separators=(",", ":"), default=str)[:4900]
        self.client.set_registered_model_tag(name, f"{_DECISION_PREFIX}{stamp}", value)

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every recorded decision about ``name``, oldest first."""
        validate_name(name)
        try:
            model = self.client.get_registered_model(name)
        except MlflowException:
            return []
        items = sorted((k, v) for k, v in (model.tags or {}).items() if k.startswith(_DECISION_PREFIX))
        return [json.loads(v) for _, v in items]

    def download_bundle(self, run_id: str, destination: Path) -> Path:
        """Download the ``bunga/`` bundle (model.onnx + bunga.json) logged by a run."""
        destination.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=destination) as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=BUNDLE_PATH, dst_path=tmp, tracking_uri=self.uri
            )
            target = destination / run_id
            if not target.exists():
                Path(local).rename(target)
        return target
