"""Property-based fuzzing of the whole HTTP API from its OpenAPI schema (Schemathesis strategies
driven by Hypothesis), bounded per operation: no 5xx, responses conform to the schema."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from bunga.config import Settings
from bunga.serving.app import create_app

EXAMPLES = 40


def test_every_operation_survives_generated_requests(model_dir: Path, tmp_path: Path, capsys: object) -> None:
    app = create_app(
        Settings(model_dir=model_dir, data_dir=tmp_path / "collected_data", admin_token="fuzz-admin-token-123456")
    )  # type: ignore[call-arg]
    app.state.store.reload()  # load the models now (the generated calls do not run the lifespan)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    counts: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            counts[case.operation.label] = counts.get(case.operation.label, 0) + 1
            # A photo's validity (a decodable JPEG) cannot be said in a schema: random bytes that the
            # schema allows are rightly refused with 415/422, so that one check is off for uploads; so
            # is a phone answer's time (within the log's window, from now) and model version (one this
            # server served): rules of the moment, not of the schema.
            uploads = case.operation.path in {
                "/predict/image",
                "/predict/observation",
                "/feedback",
                "/predictions/phone",
            }
            case.call_and_validate(excluded_checks=[positive_data_acceptance] if uploads else None)

        run()
        assert counts.get(label), label
    assert len(counts) >= 10
    total = sum(counts.values())
    print(f"schemathesis generated {total} cases over {len(counts)} operations: {counts}")
    assert total >= 100
