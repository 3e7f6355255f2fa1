"""The deployment targets the project's brief names (Heroku, AWS ECS on Fargate) and Kubernetes, checked
offline: Heroku's files against the app.json schema, Kubernetes objects against the API's schemas
(kubernetes-validate), and one configuration contract across every target."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bunga.config import Settings
from tests.conftest import ROOT
from tests.helpers import missing

K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.37.0"

# app.json as Heroku documents it (https://devcenter.heroku.com/articles/app-json-schema), written out
# as JSON Schema: unknown top-level keys are refused so a typo cannot pass silently.
APP_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 3, "maxLength": 30, "pattern": "^[a-z][a-z0-9-]*$"},
        "description": {"type": "string"},
        "keywords": {"type": "array", "items": {"type": "string"}},
        "website": {"type": "string", "format": "uri"},
        "repository": {"type": "string"},
        "logo": {"type": "string"},
        "success_url": {"type": "string"},
        "stack": {"enum": ["container", "heroku-22", "heroku-24"]},
        "scripts": {"type": "object", "additionalProperties": {"type": "string"}},
        "buildpacks": {"type": "array"},
        "environments": {"type": "object"},
        "image": {"type": "string"},
        "env": {
            "type": "object",
            "additionalProperties": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "description": {"type": "string"},
                            "value": {"type": "string"},
                            "required": {"type": "boolean"},
                            "generator": {"enum": ["secret"]},
                        },
                    },
                ]
            },
        },
        "formation": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["quantity"],
                "properties": {"quantity": {"type": "integer", "minimum": 0}, "size": {"type": "string"}},
            },
        },
        "addons": {
            "type": "array",
            "items": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["plan"],
                        "properties": {
                            "plan": {"type": "string"},
                            "as": {"type": "string"},
                            "options": {"type": "object"},
                        },
                    },
                ]
            },
        },
    },
}
# Variables a target may set that are the platform's or a peer's, not bunga's (DB_HOST and DB_PASSWORD:
# the ECS template's own glue, joined into DATABASE_URL and MLflow's store URI in the task's command).
PLATFORM = re.compile(r"^(PORT|DATABASE_URL|MLFLOW_[A-Z_]+|POSTGRES_[A-Z_]+|AWS_[A-Z_]+|GF_[A-Z_]+|DB_[A-Z_]+)$")


def _stages() -> set[str]:
    return set(re.findall(r"^FROM \S+ AS (\S+)", (ROOT / "Dockerfile").read_text(), flags=re.M))


def test_heroku_builds_the_runtime_stage() -> None:
    heroku = yaml.safe_load((ROOT / "heroku.yml").read_text())
    web = heroku["build"]["docker"]["web"]
    assert (ROOT / web["dockerfile"]).is_file() and web["target"] in _stages()
    assert set(heroku) <= {"setup", "build", "release", "run"}  # heroku.yml's documented sections
    assert "run" not in heroku  # the image's CMD is the web process (bunga serve on $PORT)


def test_app_json_follows_its_schema_and_sizes_the_inbox_for_the_smallest_plan() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    jsonschema.validate(app, APP_JSON_SCHEMA)
    assert app["stack"] == "container"
    assert app["env"]["BUNGA_ADMIN_TOKEN"]["generator"] == "secret"
    assert any(a["plan"].startswith("heroku-postgresql") for a in app["addons"])  # DATABASE_URL: the log
    assert int(app["env"]["BUNGA_INBOX_MAX_BYTES"]["value"]) <= 1_000_000_000
    with pytest.raises(jsonschema.ValidationError):  # the schema can fail: a misspelt key is refused
        jsonschema.validate({**app, "formations": {}}, APP_JSON_SCHEMA)


def _k8s_objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects = []
    for name in kustomization["resources"]:
        objects += [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    return objects


def test_kubernetes_objects_pass_the_api_schemas() -> None:
    import kubernetes_validate

    objects = _k8s_objects()
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "CronJob",
        "ConfigMap",
    } <= kinds
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    broken = json.loads(json.dumps(next(o for o in objects if o["kind"] == "Deployment")))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):  # the check can fail
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_the_api_deployment_probes_and_secrets() -> None:
    api = next(o for o in _k8s_objects() if o["kind"] == "Deployment" and o["metadata"]["name"] == "bunga-api")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    secrets = {e["name"] for e in container["env"] if "valueFrom" in e}
    assert {"BUNGA_ADMIN_TOKEN", "DATABASE_URL"} <= secrets  # by reference, never a value in the repository
    everything = "".join(p.read_text() for p in K8S.glob("*.yaml"))
    assert "kind: Secret" not in everything


def test_kubectl_renders_the_kustomization() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here (the schema test covers the objects)")
    rendered = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert all(d["metadata"].get("namespace") == "bunga" for d in docs if d["kind"] != "Namespace")
    images = {
        c["image"] for d in docs if d["kind"] == "Deployment" for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"ghcr.io/example/bunga:latest", "ghcr.io/example/bunga-mlflow:latest"}


def _known_settings() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"BUNGA_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []):
            if isinstance(choice, str):
                names.add(choice.upper())
    return names


def _container_env(objects: list[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            names |= set(obj["data"])
        text = json.dumps(obj)
        names |= set(re.findall(r'"name": "([A-Z][A-Z0-9_]+)", "value', text))
    return names


def target_variables() -> dict[str, set[str]]:
    """Every environment variable each target sets, by target."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    render = yaml.safe_load((ROOT / "render.yaml").read_text())
    app = json.loads((ROOT / "app.json").read_text())
    targets = {
        "compose": {k for s in compose["services"].values() for k in (s.get("environment") or {})},
        "render": {v["key"] for s in render["services"] for v in s["envVars"]},
        "heroku": set(app["env"]),
        "kubernetes": _container_env(_k8s_objects()),
    }
    aws = ROOT / "deploy" / "aws" / "bunga.yaml"
    if aws.is_file():
        targets["aws"] = set(re.findall(r"- Name: ([A-Z][A-Z0-9_]+)", aws.read_text()))
    return targets


def test_every_target_sets_only_settings_bunga_knows() -> None:
    known = _known_settings()
    assert {"BUNGA_ADMIN_TOKEN", "BUNGA_MONITOR_DB", "DATABASE_URL", "MLFLOW_TRACKING_URI"} <= known
    for target, names in target_variables().items():
        assert names, target
        unknown = sorted(n for n in names if n not in known and not PLATFORM.match(n))
        assert not unknown, f"{target} sets variables bunga does not know: {unknown}"
        assert "BUNGA_TRUSTED_PROXIES" in names, f"{target} does not name its proxy"  # else one client to limits


def test_database_url_feeds_the_prediction_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example:5432/bunga")
    assert Settings().monitor_db == "postgres://u:p@db.example:5432/bunga"
    monkeypatch.setenv("BUNGA_MONITOR_DB", "log.db")
    assert Settings().monitor_db == "log.db"  # the explicit setting wins


AWS = ROOT / "deploy" / "aws" / "bunga.yaml"


def test_the_cloudformation_template_passes_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    if not cfn_lint.exists():
        missing("cfn-lint (the dev extra)")
    done = subprocess.run([str(cfn_lint), str(AWS)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr  # no error and no warning
    resources = _template()["Resources"]
    kinds = {r["Type"] for r in resources.values()}
    assert {
        "AWS::ECS::Cluster",
        "AWS::ECS::Service",
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::RDS::DBInstance",
        "AWS::S3::Bucket",
        "AWS::SecretsManager::Secret",
        "AWS::Logs::LogGroup",
    } <= kinds
    assert resources["ApiTargets"]["Properties"]["HealthCheckPath"] == "/ready"
    breaker = resources["ApiService"]["Properties"]["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
    assert breaker == {"Enable": True, "Rollback": True}
    database = resources["Database"]["Properties"]  # secrets by reference: the password is RDS-managed
    assert database["ManageMasterUserPassword"] is True and "MasterUserPassword" not in database
    assert "BUNGA_ADMIN_TOKEN" not in json.dumps([e for r in resources.values() for e in _environment(r)])


def _environment(resource: dict[str, Any]) -> list[Any]:
    """The plain (non-secret) environment entries of a task definition's containers."""
    containers = resource.get("Properties", {}).get("ContainerDefinitions", [])
    return [entry["Name"] for c in containers for entry in c.get("Environment", [])]


def _template() -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml

    return dict(cfn_yaml.load(str(AWS)))


def _placeholders(value: Any) -> Any:
    """Intrinsic functions replaced by plain strings (what CloudFormation resolves at deploy time)."""
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in {"Ref", "Fn::GetAtt", "Fn::Sub", "Fn::Join", "Fn::Select"}:
            return "resolved-at-deploy-time"
        return {k: _placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    return value


def _api_names(value: Any, free_form: bool = False) -> Any:
    """CloudFormation's PascalCase properties as the ECS API's camelCase parameters (a log driver's
    options are a free-form map and keep their keys)."""
    if isinstance(value, dict):
        if free_form:
            return dict(value)
        return {k[0].lower() + k[1:]: _api_names(v, k == "Options") for k, v in value.items()}
    if isinstance(value, list):
        return [_api_names(v) for v in value]
    return value


def test_each_task_definition_passes_the_ecs_api_validator() -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    shape = (
        botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition").input_shape
    )
    tasks = {n: r for n, r in _template()["Resources"].items() if r["Type"] == "AWS::ECS::TaskDefinition"}
    assert set(tasks) == {"ApiTask", "MlflowTask", "TrainerTask"}
    for name, task in tasks.items():
        params = _api_names(_placeholders(task["Properties"]))
        report = ParamValidator().validate(params, shape)
        assert not report.has_errors(), f"{name}: {report.generate_report()}"
    broken = _api_names(_placeholders(tasks["ApiTask"]["Properties"]))
    broken["containerDefinitions"][0]["portMappings"][0]["containerPort"] = "8000"  # a string, not an integer
    assert ParamValidator().validate(broken, shape).has_errors()  # the check can fail


def test_the_manual_aws_workflow_deploys_the_template() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy-aws.yml").read_text())
    assert set(workflow[True]) == {"workflow_dispatch"}  # manual only (YAML reads `on` as True)
    steps = workflow["jobs"]["deploy"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("aws-actions/configure-aws-credentials@") for u in uses)
    assert any(u.startswith("aws-actions/amazon-ecr-login@") for u in uses)
    deploy = next(s for s in steps if s.get("uses", "").startswith("aws-actions/aws-cloudformation-github-deploy@"))
    assert (ROOT / deploy["with"]["template"]).resolve() == AWS.resolve()
    overrides = deploy["with"]["parameter-overrides"]
    required = {k for k, v in _template()["Parameters"].items() if "Default" not in v}
    assert required <= set(re.findall(r"(\w+)=", overrides)), required
