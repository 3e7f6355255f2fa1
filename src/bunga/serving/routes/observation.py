"""Several photos of one plant, answered as one observation."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from bunga.files import sha256_bytes
from bunga.models.observation import MAX_PHOTOS
from bunga.serving.limits import check_rate
from bunga.serving.observations import ObservationBook
from bunga.serving.photos import multipart_openapi
from bunga.serving.routes.predict import answer_photos, photo_prediction, photo_slot, score_uploads
from bunga.serving.schemas import ObservationPrediction

router = APIRouter(tags=["predict"])

MULTIPART_OBSERVATION = multipart_openapi(
    {
        "file": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_PHOTOS,
            "items": {"type": "string", "format": "binary"},
            "description": f"1 to {MAX_PHOTOS} photos of one plant (JPEG, PNG or WebP); repeat the field",
        },
    }
)


@router.post(
    "/predict/observation",
    response_model=ObservationPrediction,
    summary="One answer for several photos of one plant",
    openapi_extra=MULTIPART_OBSERVATION,
    responses={413: {"description": "Too large"}, 415: {"description": "Not a JPEG, PNG or WebP"}},
)
async def predict_observation(
    request: Request,
    k: Annotated[int, Query(ge=1, le=20, description="How many candidate species to list")] = 3,
) -> ObservationPrediction:
    """Photos judged not a flower are left out and the others combined (mean log-probabilities);
    the band of a combination comes from thresholds fitted at training for that many photos. One
    photo answers exactly as ``/predict/image``. The answer carries the server's ``observation_id``:
    cite it when sending feedback for these photos."""
    started = time.perf_counter()
    state = request.app.state
    check_rate(request, state.predict_buckets, "rate_predict")
    slot = photo_slot(state.store)
    uploads, scores = await score_uploads(request, slot, MAX_PHOTOS)
    book: ObservationBook = state.observations
    digests = [sha256_bytes(u.data) for u in uploads]
    observation_id = book.issue(digests)
    photos = answer_photos(request, slot, scores, uploads, k, started, (observation_id, digests))
    combined, how = slot.predictor.observation_answer(scores, k)
    answer = photo_prediction(0, combined, slot, state.catalog)
    state.metrics.observations.labels(str(len(uploads))).inc()
    return ObservationPrediction(
        **answer.model_dump(),
        observation_id=observation_id,
        photo_count=len(uploads),
        photos_used=len(how.used),
        photos=photos,
    )
