"""Deployment files, validated without a Docker engine: compose (docker-compose 1.29 `config`),
the Render blueprint against its documented fields, CI workflows, the Dockerfile (hadolint)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bunga.config import Settings
from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
RENDER = yaml.safe_load((ROOT / "render.yaml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()

# Render Blueprint fields for a service, as documented in the Blueprint specification.
RENDER_SERVICE_FIELDS = {
    "type",
    "name",
    "runtime",
    "plan",
    "region",
    "repo",
    "branch",
    "rootDir",
    "dockerfilePath",
    "dockerContext",
    "dockerCommand",
    "image",
    "registryCredential",
    "buildCommand",
    "startCommand",
    "preDeployCommand",
    "healthCheckPath",
    "envVars",
    "disk",
    "numInstances",
    "scaling",
    "autoDeploy",
    "autoDeployTrigger",
    "buildFilter",
    "domains",
    "previews",
    "pullRequestPreviewsEnabled",
    "maxShutdownDelaySeconds",
    "initialDeployHook",
    "ipAllowList",
}
RENDER_ENV_FIELDS = {"key", "value", "generateValue", "sync", "fromDatabase", "fromService", "fromGroup"}


def _tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run / pyproject must install it")
        pytest.skip(f"{name} is not installed here")
    return found


def test_compose_file_is_valid_for_docker_compose() -> None:
    secrets = {"POSTGRES_PASSWORD": "x" * 20, "BUNGA_ADMIN_TOKEN": "y" * 20, "GRAFANA_ADMIN_PASSWORD": "z" * 20}
    env = {**os.environ, **secrets}
    result = subprocess.run(
        [_tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_services_health_checks_and_volumes() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "mlflow", "trainer", "api", "proxy", "prometheus", "grafana"}
    for name in ("postgres", "mlflow", "api", "proxy", "prometheus", "grafana"):
        assert "test" in services[name]["healthcheck"], name
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert services["trainer"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    command = services["mlflow"]["command"]
    assert "--serve-artifacts" in command and "postgresql" in command
    assert "ports" not in services["mlflow"]  # only inside the compose network
    assert "ports" not in services["postgres"]
    # visitors reach the API through nginx only (slow headers cut there), which the API trusts
    assert "ports" not in services["api"] and services["proxy"]["ports"] == ["${API_PORT:-8000}:8080"]
    proxy_ip = services["proxy"]["networks"]["default"]["ipv4_address"]
    assert json.loads(services["api"]["environment"]["BUNGA_TRUSTED_PROXIES"]) == [proxy_ip]
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]
    assert services["api"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["trainer"]["command"] == ["pipeline", "--if-needed"]
    assert {"pgdata", "mlartifacts", "inbox"} <= set(COMPOSE["volumes"])
    assert any(v.startswith("inbox:") for v in services["api"]["volumes"])
    assert any(v.startswith("inbox:") for v in services["trainer"]["volumes"])
    assert "container_name" not in services["api"]  # --scale api=N needs unnamed containers
    mounts = services["prometheus"]["volumes"] + services["grafana"]["volumes"]
    for mount in mounts:  # every provisioned file the compose stack mounts is in the repository
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), source
    # the prediction log: a `monitor` database on the stack's PostgreSQL (created at start-up)
    assert services["api"]["environment"]["BUNGA_MONITOR_DB"].endswith("@postgres:5432/monitor")


def _promtool() -> str:
    return _tool("promtool")


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    rules = ROOT / "deploy" / "prometheus"
    check = subprocess.run([_promtool(), "check", "rules", str(rules / "alerts.yml")], capture_output=True, text=True)
    assert check.returncode == 0 and "SUCCESS: 7 rules found" in check.stdout, check.stdout + check.stderr
    test = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"], cwd=rules, capture_output=True, text=True)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr
    config = subprocess.run(
        [_promtool(), "check", "config", "--syntax-only", str(rules / "prometheus.yml")], capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr
    alerts = yaml.safe_load((rules / "alerts.yml").read_text())["groups"][0]["rules"]
    tested = (rules / "alerts_test.yml").read_text()
    assert all(f"alertname: {a['alert']}" in tested for a in alerts)  # every rule has a unit test


def _exported_metrics() -> set[str]:
    """Every metric name the app exports (with the _total, _bucket, ... series names)."""
    from prometheus_client.parser import text_string_to_metric_families

    from bunga.serving.metrics import Metrics

    m = Metrics()
    m.requests.labels("GET", "/x", "200").inc()
    m.latency.labels("/x").observe(0.1)
    m.predictions.labels("photos", "x", "1").inc()
    m.rejected.labels("x").inc()
    m.photo_answers.labels("sure", "champion").inc()
    m.model_version.labels("photos", "champion", "n", "1").set(1)
    from prometheus_client import generate_latest

    names = set()
    for family in text_string_to_metric_families(generate_latest(m.registry).decode()):
        names |= {sample.name for sample in family.samples}
    return names


def test_every_dashboard_query_names_metrics_the_app_exports() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "bunga.json").read_text())
    exported = _exported_metrics()
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 6
    for expr in exprs:
        used = set(re.findall(r"\bbunga_[a-z_]+", expr))
        assert used and used <= exported, (expr, used - exported)
    alerts = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()
    assert set(re.findall(r"\bbunga_[a-z_]+", alerts)) <= exported
    datasources = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    provisioned = yaml.safe_load(datasources.read_text())
    uid = provisioned["datasources"][0]["uid"]
    assert all(panel["datasource"]["uid"] == uid for panel in dashboard["panels"])


def test_env_example_lists_every_variable() -> None:
    listed = set(re.findall(r"^([A-Z0-9_]+)=", ENV_EXAMPLE, re.M))
    compose_vars = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert compose_vars <= listed
    for name, field in Settings.model_fields.items():
        expected = "MLFLOW_TRACKING_URI" if name == "mlflow_tracking_uri" else f"BUNGA_{name.upper()}"
        if field.exclude:
            continue
        if name in {
            "experiment_measurements",
            "experiment_photos",
            "model_measurements",
            "model_photos",
            "image_batch_size",
        }:
            continue  # in the settings reference (docs/reference/settings.md); rarely changed
        assert expected in listed, expected


def test_render_blueprint_uses_documented_fields() -> None:
    (service,) = RENDER["services"]
    assert set(service) <= RENDER_SERVICE_FIELDS, set(service) - RENDER_SERVICE_FIELDS
    assert service["type"] == "web" and service["runtime"] == "docker"
    assert service["healthCheckPath"] == "/health"
    env = {e["key"]: e for e in service["envVars"]}
    assert all(set(e) <= RENDER_ENV_FIELDS for e in env.values())
    assert env["BUNGA_ADMIN_TOKEN"] == {"key": "BUNGA_ADMIN_TOKEN", "generateValue": True}
    assert env["MLFLOW_TRACKING_URI"].get("sync") is False  # a secret set in the dashboard, not committed
    disk = service["disk"]
    assert set(disk) == {"name", "mountPath", "sizeGB"}
    assert env["BUNGA_DATA_DIR"]["value"].startswith(disk["mountPath"] + "/")
    assert "numInstances" not in service or service["numInstances"] == 1  # a disk means one instance


def test_dockerfile_runtime_is_small_non_root_and_checked() -> None:
    stages = re.findall(r"^FROM \S+ AS (\S+)", DOCKERFILE, re.M)
    assert stages[-1] == "runtime" and {"serve-deps", "trainer", "mlflow"} <= set(stages)
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001$", runtime, re.M)
    assert "HEALTHCHECK" in runtime and "/health" in runtime
    assert "0.0.0.0" in runtime and "${PORT:-8000}" in runtime
    assert "torch" not in runtime and "[image]" not in runtime
    lock = (ROOT / "requirements" / "serve.txt").read_text().lower()
    for heavy in ("torch", "scikit-learn", "pandas", "mlflow"):
        assert not re.search(rf"^{heavy}==", lock, re.M), heavy
    assert re.search(r"^onnxruntime==", lock, re.M) and re.search(r"^fastapi==", lock, re.M)


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([_tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_workflows_match_ci_run() -> None:
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    retrain = yaml.safe_load((ROOT / ".github" / "workflows" / "retrain.yml").read_text())
    ci_steps = " ".join(str(s.get("run", "")) for s in ci["jobs"]["test"]["steps"])
    assert "bash .ci/run" in ci_steps
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    triggers = retrain[True] if True in retrain else retrain["on"]  # YAML 1.1 reads `on` as True
    assert "workflow_dispatch" in triggers and "schedule" in triggers
    steps = " ".join(str(s.get("run", "")) for s in retrain["jobs"]["pipeline"]["steps"])
    assert "bunga pipeline" in steps
    assert "secrets.MLFLOW_TRACKING_URI" in (ROOT / ".github" / "workflows" / "retrain.yml").read_text()
