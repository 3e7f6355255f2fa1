"""The HTTP floors the measurement API is compared with: FastAPI validating the same request body
and returning a constant (the cost of the API contract itself), and a bare ASGI app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from bunga.serving.schemas import PredictRequest

CONSTANT = {
    "predictions": [
        {
            "species": "setosa",
            "probabilities": {"setosa": 1.0, "versicolor": 0.0, "virginica": 0.0},
            "model_name": "constant",
            "model_version": "0",
        }
    ]
}
BODY = b'{"predictions":[{"species":"setosa"}]}'

fastapi_app = FastAPI()


@fastapi_app.post("/predict")
async def predict(payload: PredictRequest) -> dict[str, Any]:
    """Validates like bunga's /predict, then answers a constant."""
    return CONSTANT


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the body and answers a constant: the floor of any Python ASGI service."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": BODY})
