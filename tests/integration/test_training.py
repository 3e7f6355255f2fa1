"""Training, tracking, the gate and the registry, on the shipped sample data with a real MLflow
(SQLite store in a temporary folder)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from bunga.cli import app
from bunga.config import get_settings
from bunga.predict import Predictor
from tests.conftest import copy_sheets

runner = CliRunner()


def use_workspace(ws: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """Point the CLI and MLflow at a workspace folder."""
    monkeypatch.chdir(ws)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws / 'mlflow.db'}")
    monkeypatch.setenv("BUNGA_ARTIFACT_DIR", str(ws / "mlartifacts"))
    get_settings.cache_clear()
    return MlflowClient(f"sqlite:///{ws / 'mlflow.db'}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Sample data merged, a measurement model trained, gated and promoted once for the module."""
    ws = tmp_path_factory.mktemp("ws")
    copy_sheets(ws / "collected_data")
    with pytest.MonkeyPatch.context() as mp:
        use_workspace(ws, mp)
        result = runner.invoke(app, ["pipeline", "--kind", "measurements"])
        assert result.exit_code == 0, result.output
    yield ws


def test_pipeline_logs_a_complete_run(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = use_workspace(workspace, monkeypatch)
    version = client.get_model_version_by_alias("bunga-measurements", "champion")
    run = client.get_run(version.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert {"seed", "test_size", "cv_folds", "selected_model", "n_train", "n_test"} <= set(params)
    assert {
        "test_f1_macro",
        "test_accuracy",
        "test_precision_macro",
        "test_recall_weighted",
        "train_seconds",
        "onnx_max_abs_diff",
        "cv_f1_macro_logreg",
        "cv_f1_macro_svm",
    } <= set(metrics)
    assert metrics["onnx_max_abs_diff"] <= 1e-5
    assert metrics["test_f1_macro"] >= 0.9
    manifest = json.loads((workspace / "Dataset Bunga" / "manifest.json").read_text())
    assert tags["dataset_digest"] == manifest["dataset_digest"]
    assert tags["git_commit"]
    (dataset_input,) = run.inputs.dataset_inputs
    assert manifest["dataset_digest"].startswith(dataset_input.dataset.digest)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {
        "evaluation/report.json",
        "evaluation/confusion_matrix.png",
        "evaluation/confusion_matrix.json",
        "evaluation/classification_report.txt",
    } <= artifacts
    bundle = {a.path for a in client.list_artifacts(run.info.run_id, "bunga")}
    assert bundle == {"bunga/model.onnx", "bunga/bunga.json"}
    environment = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/environment.json")
    assert "scikit-learn" in environment and "mlflow" in environment
    model = mlflow.models.get_model_info(f"models:/bunga-measurements/{version.version}")
    assert model.signature is not None and model.saved_input_example_info is not None


def test_exported_model_predicts_typical_specimens(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_workspace(workspace, monkeypatch)
    result = runner.invoke(app, ["export", "--kind", "measurements", "--out", str(workspace / "export")])
    assert result.exit_code == 0, result.output
    predictor = Predictor(workspace / "export" / "measurements")
    typical = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.1]], dtype=np.float32)
    assert predictor.predict(typical) == ["setosa", "versicolor", "virginica"]
    assert predictor.card.version is not None and predictor.card.alias == "champion"


def test_training_is_reproducible(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = use_workspace(workspace, monkeypatch)
    first = client.get_model_version_by_alias("bunga-measurements", "champion")
    result = runner.invoke(app, ["train", "--kind", "measurements"])
    assert result.exit_code == 0, result.output
    second = client.get_model_version_by_alias("bunga-measurements", "challenger")
    assert second.version != first.version
    m1, m2 = (client.get_run(v.run_id).data.metrics for v in (first, second))
    for key in m1:
        if not key.endswith("_seconds"):
            assert m1[key] == m2[key], key
    grid = np.random.default_rng(0).uniform(0.5, 8, (200, 4)).astype(np.float32)
    probs = []
    for version in (first, second):
        folder = Path(
            mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path="bunga", dst_path=str(workspace / f"dl{version.version}")
            )
        )
        probs.append(Predictor(folder).predict_proba(grid))
    np.testing.assert_array_equal(probs[0], probs[1])


def test_degraded_candidate_is_refused_and_rollback_restores(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = use_workspace(workspace, monkeypatch)
    champion = client.get_model_version_by_alias("bunga-measurements", "champion").version
    result = runner.invoke(app, ["train", "--kind", "measurements", "--shuffle-labels", "--model", "logreg"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["promote", "--kind", "measurements"])
    assert result.exit_code == 3
    assert "REFUSED" in result.output and "below the threshold" in result.output
    assert client.get_model_version_by_alias("bunga-measurements", "champion").version == champion
    refused = client.get_model_version_by_alias("bunga-measurements", "challenger")
    assert refused.tags["gate"] == "refused"
    # promote a good one, then roll back to the first champion
    assert runner.invoke(app, ["train", "--kind", "measurements"]).exit_code == 0
    result = runner.invoke(app, ["promote", "--kind", "measurements"])
    assert result.exit_code == 0, result.output
    new = client.get_model_version_by_alias("bunga-measurements", "champion").version
    assert new != champion
    assert client.get_model_version_by_alias("bunga-measurements", "previous").version == champion
    result = runner.invoke(app, ["rollback", "--kind", "measurements"])
    assert result.exit_code == 0, result.output
    assert client.get_model_version_by_alias("bunga-measurements", "champion").version == champion
    assert client.get_model_version_by_alias("bunga-measurements", "previous").version == new
    history = runner.invoke(app, ["history", "--kind", "measurements"])
    assert history.output.count("promoted") >= 2 and "refused" in history.output and "rollback" in history.output


def test_evaluate_any_version_on_a_new_sheet(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_workspace(workspace, monkeypatch)
    sheet = workspace / "batch.csv"
    sheet.write_text(
        "no_spesimen;panjang_sepal;lebar_sepal;panjang_petal;lebar_petal;spesies\n"
        "N1;5,0;3,4;1,5;0,2;setosa\nN2;6,6;3,0;5,6;2,1;Iris-virginica\n"
    )
    result = runner.invoke(app, ["evaluate", "--kind", "measurements", "--model", "1", "--data", str(sheet), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n_samples"] == 2 and report["accuracy"] == 1.0 and report["model_version"] == "1"


def test_tune_logs_nested_trials(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = use_workspace(workspace, monkeypatch)
    result = runner.invoke(app, ["tune", "--trials", "3"])
    assert result.exit_code == 0, result.output
    parent = client.get_model_version_by_alias("bunga-measurements", "challenger").run_id
    experiment = client.get_run(parent).info.experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'")
    assert len(children) == 3
    assert all("cv_f1_macro" in c.data.metrics and "model" in c.data.params for c in children)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["train", "--kind", "flowers"], 2, "--kind takes"),
        (["train", "--kind", "measurements", "--model", "xgboost"], 2, "--model takes one of"),
        (["evaluate", "--model", "../../etc"], 1, "invalid model reference"),
        (["evaluate", "--model", "champion"], 1, "does not exist"),
        (["rollback", "--kind", "measurements"], 1, "no previous champion"),
        (["train"], 1, "run `bunga merge` first"),
    ],
)
def test_bad_requests_get_one_line_errors(args: list[str], code: int, message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BUNGA_GATE_MIN_F1_PHOTOS": "2"}, "invalid setting BUNGA_GATE_MIN_F1_PHOTOS: Input should be less"),
        ({"BUNGA_TEST_SIZE": "1.5"}, "invalid setting BUNGA_TEST_SIZE: Input should be less than 1"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    result = runner.invoke(app, ["train"], env=env)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_single_class_dataset_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "collected_data"
    data.mkdir()
    rows = "".join(f"S{i},5.{i},3.1,1.4,0.2,setosa\n" for i in range(10))
    (data / "x.csv").write_text("specimen_id,sepal_length,sepal_width,petal_length,petal_width,species\n" + rows)
    result = runner.invoke(app, ["pipeline"])
    assert result.exit_code == 1 and "only one class (setosa)" in result.output


def test_pipeline_if_needed_retrains_only_on_new_data_or_an_alarm(sample_data: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)  # not the process-wide registry an earlier test set

    def versions() -> int:
        return len(client.search_model_versions("name='bunga-measurements'"))

    assert runner.invoke(app, ["pipeline", "--kind", "measurements", "--if-needed"]).exit_code == 0  # no champion
    assert versions() == 1
    quiet = runner.invoke(app, ["pipeline", "--kind", "measurements", "--if-needed"])
    assert quiet.exit_code == 0 and "not retrained" in quiet.output and versions() == 1
    report = tmp_path / "monitoring" / "monitor-report.json"
    report.parent.mkdir()
    report.write_text(json.dumps({"alarms": ["photos v1: class mix moved (PSI 0.40 > 0.25)"]}))
    assert "not retrained" in runner.invoke(app, ["pipeline", "--kind", "measurements", "--if-needed"]).output
    report.write_text(json.dumps({"alarms": ["measurements v1: petal_length drifted (PSI 0.61, KS 0.31, p 1e-9)"]}))
    alarmed = runner.invoke(app, ["pipeline", "--kind", "measurements", "--if-needed"])
    assert alarmed.exit_code == 0 and "the last monitoring report alarmed" in alarmed.output and versions() == 2
    truncated = json.dumps({"alarms": ["measurements v2: petal_length drifted (PSI 0.61)"]})[:30]
    for broken, why in ((truncated, "is not valid JSON"), ('{"alarm": []}', "is not a monitoring report")):
        report.write_text(broken)  # an unreadable report never passes for one without alarms
        refused = runner.invoke(app, ["pipeline", "--kind", "measurements", "--if-needed"])
        assert refused.exit_code == 1 and why in refused.output and "monitor-report.json" in refused.output
        assert "Traceback" not in refused.output and versions() == 2
    report.unlink()
    header = "specimen_id,sepal_length,sepal_width,petal_length,petal_width,species\n"
    (sample_data / "baru.csv").write_text(header + "BARU-1,5.0,3.4,1.5,0.2,setosa\n")
    new_data = runner.invoke(app, ["pipeline", "--kind", "measurements", "--if-needed"])
    assert new_data.exit_code == 0 and "the dataset changed" in new_data.output and versions() == 3
