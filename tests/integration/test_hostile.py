"""A corpus of hostile inputs, each a test: every one gets a clear 4xx (never a 5xx, never a stack
trace or a server path) and nothing is written outside the designated folders."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bunga.config import Settings
from bunga.serving.app import create_app
from tests.helpers import photo_bytes

IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture
def client(model_dir: Path, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        model_dir=model_dir, data_dir=tmp_path / "collected_data", max_files=4, admin_token="hostile-admin-token-1234"
    )  # type: ignore[call-arg]
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def png_bomb(side: int = 30_000) -> bytes:
    """A valid 1-bit PNG of one colour, side x side pixels, about 100 KB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def exif_orientation(value: int) -> bytes:
    image = Image.open(io.BytesIO(photo_bytes("sintetis_merah", 7)))
    exif = Image.Exif()
    exif[0x0112] = value
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def assert_clean(response: object, tmp_path: Path) -> None:
    text = response.text  # type: ignore[attr-defined]
    assert response.status_code < 500, text  # type: ignore[attr-defined]
    assert "Traceback" not in text and "/work/" not in text and str(tmp_path) not in text
    assert "site-packages" not in text
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "models" not in p.parts]
    inbox = tmp_path / "collected_data" / "feedback"
    monitor = tmp_path / "bunga-monitor.db"  # the prediction log (answers only, never inputs' files)
    assert all(p.is_relative_to(inbox) or p.name.startswith(monitor.name) for p in written), written


def test_oversized_json_body(client: TestClient, tmp_path: Path) -> None:
    body = b'{"sepal_length": 5.1, "pad": "' + b"x" * 2_000_000 + b'"}'
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    assert_clean(response, tmp_path)


def test_oversized_body_without_content_length(client: TestClient, tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"[" * 50_000

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert_clean(response, tmp_path)


def test_deeply_nested_json(client: TestClient, tmp_path: Path) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    assert_clean(response, tmp_path)


def test_huge_batch(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/predict", json=[IRIS] * 5000)
    assert response.status_code == 413
    assert_clean(response, tmp_path)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e400", '"5.1"', "true", "null", "[]", "{}"])
def test_non_numbers_and_non_finite_numbers(client: TestClient, tmp_path: Path, value: str) -> None:
    raw = f'{{"sepal_length": {value}, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}}'
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, value  # no coercion of strings or booleans into lengths
    assert_clean(response, tmp_path)


def test_wrong_content_type(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/predict", content=b"sepal_length=5.1", headers={"content-type": "text/plain"})
    assert response.status_code == 422 and "Content-Type: application/json" in response.json()["detail"]
    valid_json = json.dumps(IRIS).encode()  # JSON sent as a form is refused too, not guessed at
    for content_type, status in (("application/x-www-form-urlencoded", 422), ("application/merge-patch+json", 200)):
        response = client.post("/predict", content=valid_json, headers={"content-type": content_type})
        assert response.status_code == status, content_type
    response = client.post("/predict/image", json=IRIS)
    assert response.status_code == 415
    assert_clean(response, tmp_path)


def test_multipart_with_thousands_of_parts(client: TestClient, tmp_path: Path) -> None:
    boundary = "xyz"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n'
    body = (part * 5000 + f"--{boundary}--\r\n").encode()
    response = client.post(
        "/predict/image", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 400 and "Too many fields" in response.json()["detail"]
    files = [("file", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(50)]
    response = client.post("/predict/image", files=files)
    assert response.status_code == 400 and "Too many files" in response.json()["detail"]
    assert_clean(response, tmp_path)


def test_zero_byte_file(client: TestClient, tmp_path: Path) -> None:
    response = client.post("/predict/image", files={"file": ("a.jpg", b"", "image/jpeg")})
    assert response.status_code == 422 and "empty" in response.json()["detail"]
    response = client.post("/feedback", files={"file": ("a.jpg", b"", "image/jpeg")}, data={"label": ""})
    assert response.status_code == 422
    assert_clean(response, tmp_path)


def test_jpeg_truncated_mid_stream(client: TestClient, tmp_path: Path) -> None:
    data = photo_bytes(size=256)
    response = client.post("/predict/image", files={"file": ("a.jpg", data[: len(data) // 2], "image/jpeg")})
    assert response.status_code == 422 and "truncated" in response.json()["detail"]
    assert_clean(response, tmp_path)


def test_png_decompression_bomb(client: TestClient, tmp_path: Path) -> None:
    bomb = png_bomb()
    assert len(bomb) < 1_000_000
    for path in ("/predict/image", "/feedback"):
        response = client.post(path, files={"file": ("bomb.png", bomb, "image/png")})
        assert response.status_code == 413 and "pixels" in response.json()["detail"], path
    assert_clean(response, tmp_path)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "BMP", "PDF"])
def test_other_formats_where_a_photo_is_expected(client: TestClient, tmp_path: Path, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, fmt)
    response = client.post("/predict/image", files={"file": ("flower.jpg", buffer.getvalue(), "image/jpeg")})
    assert response.status_code == 415, response.text
    assert_clean(response, tmp_path)


def test_path_traversal_file_name_is_never_used(client: TestClient, tmp_path: Path) -> None:
    for name in ("../../etc/passwd.jpg", "/etc/passwd.jpg", "..\\..\\boot.ini.jpg", "a\x00b.jpg"):
        response = client.post(
            "/feedback", files={"file": (name, photo_bytes(), "image/jpeg")}, data={"label": "sintetis_merah"}
        )
        assert response.status_code == 201, response.text
    stored = sorted(p.name for p in (tmp_path / "collected_data" / "feedback" / "photos").glob("*.jpg"))
    assert len(stored) == 1 and len(stored[0]) == 64 + 4  # sha256.jpg
    assert_clean(response, tmp_path)


@pytest.mark.parametrize("orientation", [0, 3, 6, 9, 255, 65535])
def test_exif_with_absurd_orientation(client: TestClient, tmp_path: Path, orientation: int) -> None:
    response = client.post("/predict/image", files={"file": ("a.jpg", exif_orientation(orientation), "image/jpeg")})
    assert response.status_code == 200, response.text
    assert_clean(response, tmp_path)


def test_unknown_routes_and_methods(client: TestClient, tmp_path: Path) -> None:
    wrong_method = client.get("/predict")  # /predict is served by a plain route: same answer as FastAPI's
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert wrong_method.json() == {"detail": "Method Not Allowed"}
    assert_clean(wrong_method, tmp_path)
    assert client.get("/../../etc/passwd").status_code == 404
    assert client.get("/static/../../config.py").status_code == 404
    response = client.get("/species/" + "%2e%2e%2f" * 5 + "etc")
    assert response.status_code == 404
    assert_clean(response, tmp_path)


def test_request_timeout_is_504(model_dir: Path, tmp_path: Path) -> None:
    settings = Settings(model_dir=model_dir, data_dir=tmp_path / "d", request_timeout_s=0.001)  # type: ignore[call-arg]
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        files = [("file", (f"{i}.jpg", photo_bytes(seed=i, size=512), "image/jpeg")) for i in range(4)]
        response = c.post("/predict/image", files=files)
        assert response.status_code == 504 and "longer than" in response.json()["detail"]
        assert c.get("/health").status_code == 200  # probes have no timeout


def test_cors_is_off_by_default_and_allow_listed_when_set(model_dir: Path, tmp_path: Path) -> None:
    origin = {"Origin": "https://evil.example"}
    with TestClient(create_app(Settings(model_dir=model_dir, data_dir=tmp_path / "d"))) as c:  # type: ignore[call-arg]
        assert "access-control-allow-origin" not in c.get("/health", headers=origin).headers
    settings = Settings(model_dir=model_dir, data_dir=tmp_path / "d", cors_origins=["https://kebunraya.itera.ac.id"])  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as c:
        allowed = c.get("/health", headers={"Origin": "https://kebunraya.itera.ac.id"})
        assert allowed.headers["access-control-allow-origin"] == "https://kebunraya.itera.ac.id"
        assert "access-control-allow-origin" not in c.get("/health", headers=origin).headers


def test_photo_between_the_service_limit_and_pillows_is_refused_by_bunga(client: TestClient, tmp_path: Path) -> None:
    """64 MP: over bunga's 40 MP limit but under Pillow's own bomb guard, so bunga's check answers."""
    photo = png_bomb(8_000)
    for path in ("/predict/image", "/feedback"):
        response = client.post(path, files={"file": ("big.png", photo, "image/png")})
        assert response.status_code == 413, response.text
        assert "8000x8000, over the limit of 40,000,000 pixels" in response.json()["detail"], path
    assert_clean(response, tmp_path)


def test_unexpected_error_is_a_generic_500_with_security_headers(model_dir: Path, tmp_path: Path) -> None:
    settings = Settings(model_dir=model_dir, data_dir=tmp_path / "collected_data")  # type: ignore[call-arg]
    app = create_app(settings)
    secret = tmp_path / "secret-path"

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(f"failed to open {secret}")

    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; it has been logged"}
    assert "secret-path" not in response.text and "Traceback" not in response.text
    for header, value in SECURITY_HEADERS.items():
        assert response.headers[header] == value, header


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("GET", "/health"), ("POST", "/predict")])
def test_security_headers_on_pages_probes_and_errors(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path, json={"sepal_length": "x"} if method == "POST" else None)
    for header, value in SECURITY_HEADERS.items():
        assert response.headers[header] == value, (path, header)
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
