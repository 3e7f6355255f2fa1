"""The HTTP API in-process (TestClient with lifespan) and over real HTTP (a `bunga serve` process)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from bunga.config import Settings
from bunga.imaging import photo_tensor
from bunga.predict import Predictor
from bunga.serving.app import create_app
from bunga.serving.schemas import PredictResponse
from tests.conftest import TEST_CREDIT_LICENCE, TEST_CREDIT_LINK, LiveServer, copy_sheets
from tests.helpers import keep_outputs, onnx_constant_graph, onnx_scores_graph, photo_bytes

TOKEN = "test-admin-token-123456"
IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def make_client(model_dir: Path, tmp_path: Path, **overrides: object) -> TestClient:
    """An app on the given model folder that swaps models only when POST /admin/reload says so."""
    overrides = {"reload_interval_s": 0, **overrides}
    settings = Settings(model_dir=model_dir, data_dir=tmp_path / "collected_data", admin_token=TOKEN, **overrides)  # type: ignore[arg-type]
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(model_dir, tmp_path) as c:
        yield c


def test_predict_one_record_and_a_batch(client: TestClient) -> None:
    one = client.post("/predict", json=IRIS)
    assert one.status_code == 200
    PredictResponse.model_validate(one.json())  # the hot path writes JSON itself: keep the contract
    (prediction,) = one.json()["predictions"]
    assert prediction["species"] == "setosa"
    assert set(prediction["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-4
    assert prediction["model_name"] == "bunga-measurements" and prediction["model_version"]
    batch = [IRIS, {"sepal_length": 6.6, "sepal_width": 3.0, "petal_length": 5.6, "petal_width": 2.1}]
    answer = client.post("/predict", json=batch).json()["predictions"]
    assert [p["species"] for p in answer] == ["setosa", "virginica"]


def test_predict_photos_top_k_with_species_info(client: TestClient, synthetic_photos: Path) -> None:
    kuning = next((synthetic_photos / "sintetis_kuning").glob("*.jpg")).read_bytes()
    ungu = next((synthetic_photos / "sintetis_ungu").glob("*.jpg")).read_bytes()
    files = [("file", ("a.jpg", kuning, "image/jpeg")), ("file", ("b.jpg", ungu, "image/jpeg"))]
    response = client.post("/predict/image?k=2", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [0, 1]
    assert [r["species"] for r in results] == ["sintetis_kuning", "sintetis_ungu"]
    assert all(len(r["top"]) == 2 and r["recognised"] for r in results)
    info = results[0]["top"][0]["info"]
    assert info["nama"] == "Bunga sintetis kuning" and info["deskripsi"]


def test_each_candidate_links_the_models_reference_photo(client: TestClient) -> None:
    """A typical training photo per species, chosen at training and carried in the bundle, with the
    credit its collection's ATTRIBUTION.md gave it."""
    answer = client.post("/predict/image?k=4", files={"file": ("a.jpg", photo_bytes(), "image/jpeg")})
    top = answer.json()["results"][0]["top"]
    assert len(top) == 4
    for candidate in top:
        ref = candidate["reference"]
        assert ref["licence"] == TEST_CREDIT_LICENCE
        assert ref["link"].startswith(f"{TEST_CREDIT_LINK}{candidate['species']}_")
        photo = client.get(ref["url"])
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        assert "immutable" in photo.headers["cache-control"]
        with Image.open(io.BytesIO(photo.content)) as image:
            assert image.format == "JPEG" and max(image.size) <= 160
    species = top[0]["species"]
    assert client.get(f"/species/{species}/photo?version=no-such-version").status_code == 200  # the champion's
    missing = client.get("/species/bunga_palsu/photo")
    assert missing.status_code == 404 and "no reference photo" in missing.json()["detail"]


def test_unrecognised_photo_says_so_and_lists_candidates(model_dir: Path, tmp_path: Path) -> None:
    card_path = model_dir / "photos" / "bunga.json"
    card = json.loads(card_path.read_text())
    card["abstention"]["threshold"] = -1.0  # refuse everything
    card_path.write_text(json.dumps(card))
    with make_client(model_dir, tmp_path) as c:
        result = c.post("/predict/image", files={"file": ("x.jpg", photo_bytes(), "image/jpeg")}).json()["results"][0]
    assert result["recognised"] is False and result["species"] is None
    assert result["outcome"] == "unknown_species" and len(result["top"]) == 3


def test_not_a_flower_is_told_apart_from_an_unknown_flower(model_dir: Path, tmp_path: Path) -> None:
    card_path = model_dir / "photos" / "bunga.json"
    card = json.loads(card_path.read_text())
    assert card["not_flower"]["imagenet_classes"] and 0 < card["not_flower"]["threshold"] < 1
    card["not_flower"]["threshold"] = -1.0  # nothing looks like a flower
    card_path.write_text(json.dumps(card))
    with make_client(model_dir, tmp_path) as c:
        result = c.post("/predict/image", files={"file": ("x.jpg", photo_bytes(), "image/jpeg")}).json()["results"][0]
        metrics = c.get("/metrics").text
    assert result["recognised"] is False and result["species"] is None and result["outcome"] == "not_a_flower"
    assert result["not_flower_score"] > -1.0
    assert 'species="_not_a_flower"' in metrics


def test_species_catalogue(client: TestClient) -> None:
    species = client.get("/species").json()
    ids = {s["id"] for s in species}
    assert {"setosa", "hibiscus_rosa_sinensis", "plumeria_rubra", "hibiscus_sabdariffa"} <= ids
    kamboja = client.get("/species/plumeria_rubra").json()
    assert kamboja["nama"] == "Kamboja merah" and kamboja["latin"] == "Plumeria rubra"
    missing = client.get("/species/rafflesia")
    assert missing.status_code == 404 and "rafflesia" in missing.json()["detail"]


def test_probes_model_info_and_metrics(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "models": {}, "stale": {}, "errors": {}}
    ready = client.get("/ready")
    assert ready.status_code == 200 and set(ready.json()["models"]) == {"measurements", "photos"}
    models = client.get("/model").json()["models"]
    assert models["measurements"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert models["photos"]["dataset_digest"] and models["photos"]["metrics"]["test_f1_macro"] > 0
    client.post("/predict", json=IRIS)
    client.post("/predict", json=[IRIS, IRIS, IRIS])  # a batch counts each record
    text = client.get("/metrics").text
    counted = {
        s.labels["species"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "bunga_predictions_total" and s.labels["kind"] == "measurements"
    }
    assert counted == {"setosa": 4.0}
    assert "bunga_request_seconds_bucket" in text and 'route="/predict"' in text
    assert "bunga_model_version_info" in text


def test_no_model_loaded_is_503_with_a_message(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with make_client(empty, tmp_path) as c:
        assert c.get("/ready").status_code == 503
        response = c.post("/predict", json=IRIS)
        assert response.status_code == 503 and "no measurements model" in response.json()["detail"]
        assert c.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}, 422),  # wrong feature count
        ({**IRIS, "stem_length": 3.0}, 422),
        ({**IRIS, "sepal_length": "lima"}, 422),
        ({**IRIS, "petal_width": -0.2}, 422),
        ({**IRIS, "petal_width": 0}, 422),
        ({**IRIS, "petal_width": 1e308}, 422),
        ([], 422),
        ([IRIS] * 300, 413),
        ("bunga", 422),
        ([[5.1, 3.5, 1.4, 0.2]], 422),
    ],
)
def test_bad_measurements_get_4xx(client: TestClient, body: object, status: int) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == status, response.text
    assert "detail" in response.json()


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(client: TestClient, literal: str) -> None:
    raw = f'{{"sepal_length": {literal}, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}}'
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        ({"file": ("a.txt", b"hello, not a photo", "image/jpeg")}, 415, "not a readable image"),
        ({"file": ("a.jpg", photo_bytes()[: len(photo_bytes()) * 2 // 3], "image/jpeg")}, 422, "truncated"),
        ({"file": ("a.jpg", b"", "image/jpeg")}, 422, "empty"),
        ({"file": ("a.gif", photo_bytes(fmt="GIF"), "image/gif")}, 415, "format GIF is not accepted"),
        ({"photo": ("a.jpg", photo_bytes(), "image/jpeg")}, 422, "field 'file'"),
    ],
)
def test_bad_photos_get_4xx(
    client: TestClient, files: dict[str, tuple[str, bytes, str]], status: int, message: str
) -> None:
    response = client.post("/predict/image", files=files)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


@pytest.mark.parametrize("k", ["0", "-1", "21", "tiga"])
def test_unknown_k_is_422(client: TestClient, k: str) -> None:
    response = client.post(f"/predict/image?k={k}", files={"file": ("a.jpg", photo_bytes(), "image/jpeg")})
    assert response.status_code == 422


def test_pixel_and_size_limits(model_dir: Path, tmp_path: Path) -> None:
    with make_client(model_dir, tmp_path, serve_max_pixels=100 * 100, max_upload_bytes=50_000) as c:
        big = c.post("/predict/image", files={"file": ("a.jpg", photo_bytes(size=200), "image/jpeg")})
        assert big.status_code == 413 and "pixels" in big.json()["detail"]
        huge = c.post("/predict/image", files={"file": ("a.png", b"\x89PNG" + b"0" * 60_000, "image/png")})
        assert huge.status_code == 413


def test_feedback_photo_is_stored_under_its_hash(client: TestClient, tmp_path: Path) -> None:
    data = photo_bytes("sintetis_putih", 5)
    response = client.post(
        "/feedback",
        files={"file": ("../../etc/passwd.jpg", data, "image/jpeg")},
        data={"label": "sintetis_putih", "predicted": "sintetis_kuning"},
    )
    assert response.status_code == 201, response.text
    sha = response.json()["id"]
    inbox = tmp_path / "collected_data" / "feedback" / "photos"
    assert (inbox / f"{sha}.jpg").read_bytes() == data
    (meta,) = inbox.glob(f"{sha}-*.json")
    record = json.loads(meta.read_text())
    assert record["label"] == "sintetis_putih" and record["predicted"] == "sintetis_kuning"
    assert record["model_version"] and record["time"]
    assert not (tmp_path / "etc").exists() and not list(tmp_path.rglob("passwd*"))
    unknown = client.post("/feedback", files={"file": ("x.jpg", data, "image/jpeg")}, data={"label": "bunga_x"})
    assert unknown.status_code == 422 and "unknown label" in unknown.json()["detail"]
    dunno = client.post("/feedback", files={"file": ("x.jpg", data, "image/jpeg")}, data={"label": ""})
    assert dunno.status_code == 201 and dunno.json()["label"] is None


def test_feedback_measurement_then_merge_picks_everything_up(client: TestClient, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bunga.cli import app

    ok = client.post("/feedback", json={**IRIS, "label": "setosa", "predicted": "setosa"})
    assert ok.status_code == 201 and ok.json()["id"].startswith("feedback-")
    assert client.post("/feedback", json={**IRIS, "label": ""}).status_code == 422
    assert client.post("/feedback", json={**IRIS, "label": "mawar"}).status_code == 422
    assert client.post("/feedback", json={"label": "setosa"}).status_code == 422
    assert client.post("/feedback", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    env = {"BUNGA_DATA_DIR": str(tmp_path / "collected_data")}
    vote = {"files": {"file": ("x.jpg", photo_bytes("sintetis_ungu", 9), "image/jpeg")}}
    assert client.post("/feedback", **vote, data={"label": "sintetis_ungu"}).status_code == 201  # type: ignore[arg-type]
    result = CliRunner().invoke(app, ["merge"], env=env)
    assert result.exit_code == 0, result.output
    # one visitor's vote does not move training data by itself: the photo waits for a second vote
    assert "rows: 1 read = 0 kept" in result.output and "photos: 1 read = 0 kept" in result.output
    assert "1 queued" in result.output
    assert client.post("/feedback", **vote, data={"label": "sintetis_ungu"}).status_code == 201  # type: ignore[arg-type]
    result = CliRunner().invoke(app, ["merge"], env=env)
    assert "photos: 1 read = 0 kept" in result.output, result.output  # the same visitor again: one voter
    records = [json.loads(p.read_text()) for p in (tmp_path / "collected_data" / "feedback" / "photos").glob("*.json")]
    assert len({r["voter"] for r in records}) == 1 and "testclient" not in json.dumps(records)  # a pseudonym
    with TestClient(client.app, client=("10.0.0.2", 50000)) as other:  # a second visitor agrees
        assert other.post("/feedback", **vote, data={"label": "sintetis_ungu"}).status_code == 201  # type: ignore[arg-type]
    result = CliRunner().invoke(app, ["merge"], env=env)
    assert "photos: 1 read = 1 kept" in result.output, result.output


def test_one_anonymous_vote_cannot_create_a_species(model_dir: Path, tmp_path: Path) -> None:
    """Without a photo model loaded, a feedback label must still name a catalogue species; and a
    label the catalogue lacks never becomes a class folder at merge, however many votes it gets."""
    from typer.testing import CliRunner

    from bunga.cli import app

    with make_client(model_dir, tmp_path, serve_kinds=["measurements"]) as c:
        upload = {"file": ("x.jpg", photo_bytes("sintetis_ungu", 9), "image/jpeg")}
        refused = c.post("/feedback", files=upload, data={"label": "bunga_palsu_buatan"})
        assert refused.status_code == 422 and "unknown label" in refused.json()["detail"]
        assert c.post("/feedback", files=upload, data={"label": "rose"}).status_code == 201
    inbox = tmp_path / "collected_data" / "feedback" / "photos"
    assert not any("bunga_palsu_buatan" in p.read_text() for p in inbox.glob("*.json"))
    forged = photo_bytes("sintetis_merah", 1)
    sha = hashlib.sha256(forged).hexdigest()
    (inbox / f"{sha}.jpg").write_bytes(forged)
    for i in range(3):  # agreeing votes written straight into the inbox, as a script might
        record = {"kind": "photos", "sha256": sha, "label": "bunga_palsu_buatan"}
        (inbox / f"{sha}-forged{i}.json").write_text(json.dumps(record))
    result = CliRunner().invoke(app, ["merge"], env={"BUNGA_DATA_DIR": str(tmp_path / "collected_data")})
    assert result.exit_code == 0, result.output
    assert "2 queued" in result.output  # the rose (one vote) and the forged photo wait for a curator
    assert not (tmp_path / "Dataset Bunga" / "bunga_palsu_buatan").exists()


def test_admin_endpoints_need_the_token(client: TestClient, model_dir: Path, tmp_path: Path) -> None:
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.post("/admin/reload", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 403
    ok = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and {r["status"] for r in ok.json()["results"]} == {"unchanged"}
    settings = Settings(model_dir=model_dir, data_dir=tmp_path / "d")
    with TestClient(create_app(settings)) as disabled:
        response = disabled.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 404 and "disabled" in response.json()["detail"]


def test_short_admin_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings(admin_token="short")


def test_reload_swaps_and_a_broken_model_never_serves(client: TestClient, model_dir: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    card_path = model_dir / "measurements" / "bunga.json"
    card = json.loads(card_path.read_text())
    card["version"] = "99"
    card_path.write_text(json.dumps(card))
    swapped = client.post("/admin/reload", headers=auth).json()["results"]
    assert {"kind": "measurements", "status": "swapped", "new_version": "99"}.items() <= swapped[0].items()
    assert client.post("/predict", json=IRIS).json()["predictions"][0]["model_version"] == "99"
    (model_dir / "measurements" / "model.onnx").write_bytes(b"not a model")
    card["version"] = "100"
    card_path.write_text(json.dumps(card))
    failed = client.post("/admin/reload", headers=auth).json()["results"][0]
    assert failed["status"] == "failed" and "sha256" in failed["error"]
    assert client.post("/predict", json=IRIS).json()["predictions"][0]["model_version"] == "99"
    # The sha256 in the card matches from here on: only onnxruntime's load and the smoke check stand
    # between these models and the visitors.
    for version, graph, error in (
        ("101", b"\x08\x07not an onnx graph at all", "cannot be loaded by onnxruntime"),
        ("102", onnx_scores_graph(4, len(card["classes"])), "not probabilities"),
    ):
        (model_dir / "measurements" / "model.onnx").write_bytes(graph)
        card.update(version=version, onnx_sha256=hashlib.sha256(graph).hexdigest())
        card_path.write_text(json.dumps(card))
        failed = client.post("/admin/reload", headers=auth).json()["results"][0]
        assert failed["status"] == "failed" and error in failed["error"], failed
        assert client.post("/predict", json=IRIS).json()["predictions"][0]["model_version"] == "99"
        assert "99" in client.get("/model").text
    assert client.get("/ready").status_code == 200


def _stage(model_dir: Path, kind: str, version: str, graph: bytes, **card_changes: object) -> None:
    """Put ``graph`` in the served folder of ``kind`` with a card whose sha256 matches it."""
    card_path = model_dir / kind / "bunga.json"
    card = json.loads(card_path.read_text())
    (model_dir / kind / "model.onnx").write_bytes(graph)
    card.update(version=version, onnx_sha256=hashlib.sha256(graph).hexdigest(), **card_changes)
    card_path.write_text(json.dumps(card))


def test_a_photo_graph_without_the_outputs_answers_use_never_serves(client: TestClient, model_dir: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    photo = {"file": ("a.jpg", photo_bytes(), "image/jpeg")}
    serving = client.post("/predict/image", files=photo).json()["results"][0]["model_version"]
    graph = (model_dir / "photos" / "model.onnx").read_bytes()
    _stage(model_dir, "photos", "broken-photos", keep_outputs(graph, ["probabilities"]))
    result = next(r for r in client.post("/admin/reload", headers=auth).json()["results"] if r["kind"] == "photos")
    assert result["status"] == "failed" and "lacks the output" in result["error"], result
    assert "similarity" in result["error"]
    answer = client.post("/predict/image", files=photo)
    assert answer.status_code == 200 and answer.json()["results"][0]["model_version"] == serving
    ready = client.get("/ready")
    assert ready.status_code == 200 and "lacks the output" in ready.json()["errors"]["photos"]
    assert "lacks the output" in client.get("/model").json()["errors"]["photos"]


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ([1.5, -0.5, 0.0], "outside [0, 1]"),  # sums to 1, negative
        ([0.2, 0.3, 0.5], "differ from those recorded at training"),  # a distribution that ignores its input
    ],
)
def test_a_measurement_graph_that_answers_wrong_never_serves(
    client: TestClient, model_dir: Path, values: list[float], error: str
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    serving = client.post("/predict", json=IRIS).json()["predictions"][0]["model_version"]
    _stage(model_dir, "measurements", "constant", onnx_constant_graph(4, values))
    result = client.post("/admin/reload", headers=auth).json()["results"][0]
    assert result["status"] == "failed" and error in result["error"], result
    assert client.post("/predict", json=IRIS).json()["predictions"][0]["model_version"] == serving
    assert error in client.get("/ready").json()["errors"]["measurements"]


def test_a_card_made_before_recorded_answers_still_serves_with_a_warning(model_dir: Path, tmp_path: Path) -> None:
    """An upgrade must not cause an outage: old cards are checked for structure and flagged."""
    for kind in ("measurements", "photos"):
        card_path = model_dir / kind / "bunga.json"
        card = json.loads(card_path.read_text())
        assert card["answers"]["probabilities"], "training records the answers"
        del card["answers"]
        card_path.write_text(json.dumps(card))
    with make_client(model_dir, tmp_path) as client:
        assert client.post("/predict", json=IRIS).status_code == 200
        assert client.post("/predict/image", files={"file": ("a.jpg", photo_bytes(), "image/jpeg")}).status_code == 200
        models = client.get("/model").json()["models"]
        assert all("no recorded answers" in models[kind]["warnings"][0] for kind in ("measurements", "photos"))
    # ...while a constant graph with such a card is still refused by its structure check
    _stage(model_dir, "measurements", "constant", onnx_constant_graph(4, [1.5, -0.5, 0.0]))
    with make_client(model_dir, tmp_path) as client:
        assert client.get("/ready").json()["models"].get("measurements", "").startswith("error:")


def test_current_cards_serve_without_warnings(client: TestClient) -> None:
    models = client.get("/model").json()["models"]
    assert models["measurements"]["warnings"] == [] and models["photos"]["warnings"] == []
    assert client.get("/ready").json()["errors"] == {}


def test_canary_sends_a_share_to_the_challenger(client: TestClient, model_dir: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    challenger = model_dir / "measurements-challenger"
    shutil.copytree(model_dir / "measurements", challenger)
    card = json.loads((challenger / "bunga.json").read_text())
    card["version"] = "7"
    (challenger / "bunga.json").write_text(json.dumps(card))
    response = client.post("/admin/traffic", json={"challenger_percent": 50}, headers=auth)
    assert response.status_code == 200 and response.json()["models"]["measurements"]["challenger_version"] == "7"
    versions = {client.post("/predict", json=IRIS).json()["predictions"][0]["model_version"] for _ in range(60)}
    assert versions == {"7", card_version(model_dir)}
    assert client.post("/admin/traffic", json={"challenger_percent": 101}, headers=auth).status_code == 422
    client.post("/admin/traffic", json={"challenger_percent": 0}, headers=auth)
    versions = {client.post("/predict", json=IRIS).json()["predictions"][0]["model_version"] for _ in range(20)}
    assert versions == {card_version(model_dir)}


def card_version(model_dir: Path) -> str:
    return str(json.loads((model_dir / "measurements" / "bunga.json").read_text())["version"])


def test_openapi_docs_and_page_work_offline(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {
        "/predict",
        "/predict/image",
        "/feedback",
        "/species",
        "/species/{species_id}",
        "/health",
        "/ready",
        "/model",
        "/metrics",
        "/admin/reload",
        "/admin/traffic",
    } <= set(schema["paths"])
    # /predict parses its body itself: the documented body must still resolve to the record's fields
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    components = schema["components"]["schemas"]
    assert body == {"$ref": "#/components/schemas/PredictRequest"}
    assert set(components["Measurements"]["properties"]) == set(IRIS)
    assert "Measurements" in json.dumps(components["PredictRequest"])
    docs = client.get("/docs").text
    assert "/static-offline-docs/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
    assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")  # no external asset
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200


def test_real_http_round_trip(live_server: LiveServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        assert http.post("/predict", json=IRIS).json()["predictions"][0]["species"] == "setosa"
        photo = http.post("/predict/image", files={"file": ("a.jpg", photo_bytes("sintetis_merah", 3), "image/jpeg")})
        assert photo.status_code == 200 and photo.json()["results"][0]["species"] == "sintetis_merah"
        stored = http.post(
            "/feedback",
            files={"file": ("a.jpg", photo_bytes("sintetis_merah", 3), "image/jpeg")},
            data={"label": "sintetis_merah"},
        )
        assert stored.status_code == 201
        assert list((tmp_path / "collected_data" / "feedback" / "photos").glob("*.jpg"))
        bad = http.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 422 and "Traceback" not in bad.text
        auth = {"Authorization": "Bearer test-admin-token-123456"}
        assert http.post("/admin/reload", headers=auth).status_code == 200


def test_one_clients_measurements_wait_for_a_curator(live_server: LiveServer, tmp_path: Path) -> None:
    """71 labelled measurements from one anonymous client leave the dataset unchanged; the rows a
    curator accepts enter it with the curator's label, a rejected one is accounted as rejected."""
    from typer.testing import CliRunner

    from bunga.cli import app

    data = copy_sheets(tmp_path / "collected_data")
    env = {"BUNGA_DATA_DIR": str(data)}
    dataset = tmp_path / "Dataset Bunga" / "flowers_dataset.csv"
    assert CliRunner().invoke(app, ["merge"], env=env).exit_code == 0
    before = dataset.read_bytes()
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        for i in range(71):
            body = {**IRIS, "sepal_length": 4.0 + i / 100, "label": "virginica"}
            assert http.post("/feedback", json=body).status_code == 201
    result = CliRunner().invoke(app, ["merge"], env=env)
    assert result.exit_code == 0, result.output
    assert dataset.read_bytes() == before and "+ 71 queued; photos" in result.output
    sheet = tmp_path / "decide.csv"
    assert CliRunner().invoke(app, ["review", "export", str(sheet), "--kind", "measurements"]).exit_code == 0
    lines = sheet.read_text().splitlines()
    assert len(lines) == 72 and lines[0].startswith("record_id,") and ",virginica,," in lines[1]
    decided = [lines[0]]
    for line, label in zip(lines[1:4], ["setosa", "virginica", "reject"], strict=True):
        cells = line.split(",")
        cells[-2] = label
        decided.append(",".join(cells))
    sheet.write_text("\n".join(decided) + "\n")
    imported = CliRunner().invoke(app, ["review", "import", str(sheet)], env=env)
    assert imported.exit_code == 0 and "3 labels recorded" in imported.output, imported.output
    result = CliRunner().invoke(app, ["merge"], env=env)
    assert result.exit_code == 0, result.output
    rows = [r for r in dataset.read_text().splitlines() if r.startswith("feedback-")]
    ids = [line.split(",")[0] for line in lines[1:4]]
    assert sorted(r.split(",")[0] for r in rows) == sorted(ids[:2])
    assert {r.split(",")[0]: r.split(",")[5] for r in rows} == {ids[0]: "setosa", ids[1]: "virginica"}
    assert (
        "+ 68 queued; photos" in result.output and ids[2] in (tmp_path / "Dataset Bunga" / "rejected.csv").read_text()
    )


def test_photo_answers_say_how_sure_they_are(model_dir: Path, tmp_path: Path) -> None:
    """Every photo answer carries a band; the card's fitted sure threshold decides sure or possible,
    and a card without bands answers every recognised photo as sure (as before)."""
    photo = {"file": ("a.jpg", photo_bytes("sintetis_merah", 5), "image/jpeg")}
    card_path = model_dir / "photos" / "bunga.json"
    card = json.loads(card_path.read_text())
    assert card["bands"]["sure_threshold"] > 0 and card["bands"]["fitted_precision"] >= 0
    assert card["bands"]["score"] == "margin"  # the threshold applies to the margin between the two best logits
    predictor = Predictor(model_dir / "photos")
    margin = predictor.sure_values(predictor.score_photos(photo_tensor(photo["file"][1], 10**8)[None]))[0]
    with make_client(model_dir, tmp_path) as client:
        result = client.post("/predict/image", files=photo).json()["results"][0]
        expected = "sure" if margin >= card["bands"]["sure_threshold"] else "possible"
        assert result["recognised"] and result["band"] == expected
    for threshold, band in ((1e6, "possible"), (0.0, "sure")):
        card["bands"]["sure_threshold"] = threshold
        card_path.write_text(json.dumps(card))
        with make_client(model_dir, tmp_path) as client:
            result = client.post("/predict/image", files=photo).json()["results"][0]
            assert result["band"] == band and result["species"] == "sintetis_merah"  # species stays for old clients
            if band == "possible":
                assert 1 <= len(result["candidates"]) <= 3 and result["candidates"][0] == "sintetis_merah"
                probabilities = {c["species"]: c["probability"] for c in result["top"]}
                assert all(probabilities[c] >= 0.05 for c in result["candidates"][1:])
            else:
                assert result["candidates"] == [] and result["family"] is None
            metrics = client.get("/metrics").text
            assert f'bunga_photo_answers_total{{arm="champion",band="{band}"}} 1.0' in metrics
    del card["bands"]
    card["not_flower"]["threshold"] = -1.0  # everything is "not a flower"
    card_path.write_text(json.dumps(card))
    with make_client(model_dir, tmp_path) as client:
        result = client.post("/predict/image", files=photo).json()["results"][0]
        assert result["band"] == "not_a_flower" and not result["recognised"] and result["candidates"] == []


def test_review_api_needs_a_curator_and_keeps_every_decision(model_dir: Path, tmp_path: Path) -> None:
    """Curators sign in with their own token (stored hashed); a decision needs a known species and a
    stored photo; a later decision on a photo wins and both are kept; the merge applies the latest."""
    from typer.testing import CliRunner

    from bunga.cli import app

    curator_token = "a-curators-token-0000000001"
    curators = {"ani": hashlib.sha256(curator_token.encode()).hexdigest()}
    closed = Settings(model_dir=model_dir, data_dir=tmp_path / "collected_data")
    with TestClient(create_app(closed)) as client:
        assert client.get("/review/queue").status_code == 404  # no curator configured: no review API
    with make_client(model_dir, tmp_path, curators=curators) as client:
        photo = {"file": ("a.jpg", photo_bytes("sintetis_ungu", 77), "image/jpeg")}
        sha = client.post("/feedback", files=photo, data={"label": "sintetis_ungu", "band": "possible"}).json()["id"]
        assert client.get("/review/queue").status_code == 401
        assert client.get("/review/queue", headers={"Authorization": "Bearer wrong"}).status_code == 403
        ani, admin = {"Authorization": f"Bearer {curator_token}"}, {"Authorization": f"Bearer {TOKEN}"}
        (entry,) = client.get("/review/queue", headers=ani).json()
        assert entry["sha256"] == sha and entry["claimed_band"] == "possible"  # the page's claim, shown as one
        # proposed from the server's own answer: "not a flower" when it saw none, else the visitor's vote
        assert entry["proposed"] == ("not_a_flower" if entry["band"] == "not_a_flower" else "sintetis_ungu")
        other = next(b for b in ("sure", "possible") if b != entry["band"])
        assert client.get(f"/review/queue?band={other}", headers=ani).json() == []
        assert client.get(f"/review/queue?band={entry['band']}", headers=ani).json() == [entry]
        assert client.get(f"/review/photos/{sha}", headers=ani).content == photo["file"][1]
        decide = lambda body, who: client.post("/review/decisions", json=body, headers=who)  # noqa: E731
        assert decide({"sha256": sha, "decision": "label", "label": "bunga_palsu"}, ani).status_code == 422
        assert decide({"sha256": "0" * 64, "decision": "reject"}, ani).status_code == 404
        assert decide({"sha256": sha, "decision": "not_a_flower"}, ani).status_code == 201
        assert client.get("/review/queue", headers=ani).json() == []  # decided: out of the queue
        assert decide({"sha256": sha, "decision": "label", "label": "sintetis_putih"}, admin).status_code == 201
        (decided,) = client.get("/review/queue?decided=true", headers=ani).json()
        assert (decided["decision"], decided["decided_label"], decided["decided_by"]) == (
            "label",
            "sintetis_putih",
            "admin",
        )
    kept = sorted((tmp_path / "collected_data" / "feedback" / "decisions").glob("*.json"))
    assert len(kept) == 2  # the undone decision is kept
    merged = CliRunner().invoke(app, ["merge"], env={"BUNGA_DATA_DIR": str(tmp_path / "collected_data")})
    assert merged.exit_code == 0 and "photos: 1 read = 1 kept" in merged.output, merged.output
    assert (tmp_path / "Dataset Bunga" / "sintetis_putih").is_dir()


def test_two_curators_deciding_one_photo_at_once_keep_every_decision(live_server: LiveServer, tmp_path: Path) -> None:
    """20 decisions on one photo from two curators at once: 20 records, and the queue and the merge
    agree on the latest."""
    import asyncio

    from typer.testing import CliRunner

    from bunga.cli import app

    data = tmp_path / "collected_data"
    photo = {"file": ("a.jpg", photo_bytes("sintetis_merah", 88), "image/jpeg")}
    sha = httpx.post(f"{live_server.url}/feedback", files=photo, data={"label": ""}).json()["id"]
    admin = {"Authorization": "Bearer test-admin-token-123456"}
    labels = ["sintetis_merah", "sintetis_kuning"] * 10

    async def decide_all() -> list[int]:
        async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        "/review/decisions", json={"sha256": sha, "decision": "label", "label": label}, headers=admin
                    )
                    for label in labels
                )
            )
        return [a.status_code for a in answers]

    assert asyncio.run(decide_all()) == [201] * 20
    records = [json.loads(p.read_text()) for p in (data / "feedback" / "decisions").glob("*.json")]
    assert len(records) == 20
    latest = max(records, key=lambda r: (r["at_ns"], r["curator"]))["label"]
    (entry,) = httpx.get(f"{live_server.url}/review/queue?decided=true", headers=admin).json()
    assert entry["decided_label"] == latest
    merged = CliRunner().invoke(app, ["merge"], env={"BUNGA_DATA_DIR": str(data)})
    assert merged.exit_code == 0 and "1 kept" in merged.output
    assert [p.parent.name for p in (tmp_path / "Dataset Bunga").glob("sintetis_*/*")] == [latest]


def test_merges_while_decisions_are_being_saved_see_each_whole(live_server: LiveServer, tmp_path: Path) -> None:
    """Merges run while a curator saves 20 decisions: each merge balances (a decision is in it whole
    or not at all), and the merge after the last decision holds all 20."""
    import re
    import threading

    from typer.testing import CliRunner

    from bunga.cli import app

    data = tmp_path / "collected_data"
    admin = {"Authorization": "Bearer test-admin-token-123456"}
    shas = []
    for i in range(20):
        photo = {"file": ("x.jpg", photo_bytes("sintetis_kuning", 900 + i), "image/jpeg")}
        shas.append(httpx.post(f"{live_server.url}/feedback", files=photo, data={"label": ""}).json()["id"])

    def decide_all() -> None:
        for sha in shas:
            body = {"sha256": sha, "decision": "label", "label": "sintetis_kuning"}
            assert httpx.post(f"{live_server.url}/review/decisions", json=body, headers=admin).status_code == 201

    curator = threading.Thread(target=decide_all)
    curator.start()
    seen = []
    while curator.is_alive() or not seen:
        merged = CliRunner().invoke(app, ["merge"], env={"BUNGA_DATA_DIR": str(data)})
        assert merged.exit_code == 0, merged.output  # the accounting balanced (the command checks it)
        kept, queued = map(int, re.search(r"photos: 20 read = (\d+) kept .* (\d+) queued", merged.output).groups())  # type: ignore[union-attr]
        assert kept + queued == 20
        seen.append(kept)
    curator.join()
    final = CliRunner().invoke(app, ["merge"], env={"BUNGA_DATA_DIR": str(data)})
    assert "photos: 20 read = 20 kept" in final.output and seen == sorted(seen)  # never fewer than before


def test_a_retried_upload_with_its_idempotency_key_is_recorded_and_charged_once(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A phone that queued feedback without signal may send it twice (the answer to the first try was
    lost): the same key gives the same answer, one record, and the quota charged once."""
    url, key = live_server.url, "9b7c3e2a-5d41-4f0e-8a77-0c2b1d6e4f10"
    sent = [
        httpx.post(
            f"{url}/feedback",
            files={"file": ("x.jpg", photo_bytes("sintetis_ungu", 77), "image/jpeg")},
            data={"label": "sintetis_ungu"},
            headers={"Idempotency-Key": key},
        )
        for _ in range(3)
    ]
    assert [r.status_code for r in sent] == [201, 201, 201] and len({r.json()["id"] for r in sent}) == 1
    assert len(list((tmp_path / "collected_data" / "feedback" / "photos").glob("*.json"))) == 1
    assert httpx.get(f"{url}/model").json()["inbox"]["files"] == 2  # the photo and its record, once
    other = httpx.post(
        f"{url}/feedback",
        files={"file": ("x.jpg", photo_bytes("sintetis_ungu", 77), "image/jpeg")},
        data={"label": "sintetis_ungu"},
        headers={"Idempotency-Key": "another-key-0001"},
    )
    assert (
        other.status_code == 201
        and len(list((tmp_path / "collected_data" / "feedback" / "photos").glob("*.json"))) == 2
    )
    bad = httpx.post(
        f"{url}/feedback",
        files={"file": ("x.jpg", photo_bytes("sintetis_ungu", 78), "image/jpeg")},
        headers={"Idempotency-Key": "short"},
    )
    assert bad.status_code == 422 and "Idempotency-Key" in bad.json()["detail"]


def test_phone_answers_are_checked_and_a_batch_sent_again_is_logged_once(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Answers computed on a phone (a photo's and a measurement's) reach the prediction log; the same
    batch sent again (the answer to the first upload was lost) adds nothing; bad records are refused."""
    url = f"{live_server.url}/predictions/phone"
    at = round(time.time() - 60, 3)
    served = httpx.get(f"{live_server.url}/model").json()["models"]
    one = {
        "photo_sha256": "a" * 64,
        "model_version": served["photos"]["version"],
        "predicted": "sintetis_merah",
        "band": "possible",
        "top_probability": 0.7,
        "at": at,
    }
    measured = {
        "kind": "measurements",
        "measurements": [5.1, 3.5, 1.4, 0.2],
        "model_version": served["measurements"]["version"],
        "predicted": "setosa",
        "top_probability": 0.95,
        "at": at,
    }
    again = {**one, "photo_sha256": "b" * 64}  # the same moment, another photo: another answer
    for _ in range(2):
        assert httpx.post(url, json={"records": [one, measured, again]}).json() == {"logged": 3}
    for bad, where in (
        ({**one, "photo_sha256": "xyz"}, "photo_sha256"),
        ({**one, "band": "certain"}, "band"),
        ({**one, "band": "sure", "predicted": None}, "names its species"),
        ({**one, "at": time.time() - 400 * 86400}, "outside the log's window"),
        ({**one, "band": None}, "photo_sha256 and band"),
        ({**measured, "measurements": [5.1, 3.5, 1.4]}, "measurements"),
        ({**measured, "measurements": [5.1, 3.5, 1.4, 0]}, "above 0"),
        ({**measured, "photo_sha256": "a" * 64}, "no photo_sha256"),
        ({**measured, "predicted": None}, "names its species"),
        ({**one, "model_version": "not-a-version"}, "no photos model this server served"),
    ):
        answer = httpx.post(url, json={"records": [bad]})
        assert answer.status_code == 422 and where in answer.text, answer.text
    assert httpx.post(url, json={"records": [one] * 257}).status_code == 422
    assert httpx.post(url, json={"records": []}).status_code == 422
    live_server.stop()  # the log is written out on the way down
    with sqlite3.connect(tmp_path / "bunga-monitor.db") as db:
        logged = db.execute(
            "SELECT kind, version, predicted, recognised, photo_sha256, f1, f4 FROM predictions WHERE arm = 'phone'"
            " ORDER BY kind, photo_sha256"
        ).fetchall()
    m, p = served["measurements"]["version"], served["photos"]["version"]
    assert logged == [
        ("measurements", m, "setosa", 1, None, 5.1, 0.2),
        ("photos", p, "sintetis_merah", 1, "a" * 64, None, None),
        ("photos", p, "sintetis_merah", 1, "b" * 64, None, None),
    ]
