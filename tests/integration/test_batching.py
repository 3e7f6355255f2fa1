"""Adaptive micro-batching of photos: concurrent requests share one model call, each answer is what
the request alone would get, and a request is never held longer than the maximum wait."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

import httpx
import numpy as np
import pytest

from bunga.imaging import load_photo, to_tensor
from bunga.predict import Predictor
from bunga.serving.batching import PhotoBatcher
from tests.conftest import LiveServer
from tests.helpers import photo_bytes

pytestmark = pytest.mark.image

STYLES = ["sintetis_merah", "sintetis_kuning", "sintetis_ungu", "sintetis_putih"]


def _tensors(n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        image, _ = load_photo(photo_bytes(STYLES[i % len(STYLES)], i), max_pixels=10_000_000, min_side=8)
        out.append(to_tensor(image)[None].astype(np.float32))
    return out


def _assert_same(batched: object, alone: object) -> None:
    for name in ("probabilities", "abstain_scores", "not_flower_scores", "signatures"):
        a, b = getattr(batched, name), getattr(alone, name)
        if a is None:
            assert b is None, name
            continue
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0, err_msg=name)
    for name in ("recognised", "not_flower"):
        assert np.array_equal(getattr(batched, name), getattr(alone, name)), name


def test_concurrent_requests_share_a_batch_and_get_their_own_answers(model_dir: Path) -> None:
    predictor = Predictor(model_dir / "photos")
    photos = _tensors(7)
    photos.insert(3, np.concatenate(_tensors(2)))  # one request carrying two photos
    batches: list[int] = []
    batcher = PhotoBatcher(max_batch=32, max_wait=0.5, observe=lambda n, waited: batches.append(n))

    async def request(x: np.ndarray, delay: float) -> object:
        with batcher.decoding():
            await asyncio.sleep(delay)  # the upload and decode of a real request
        return await batcher.score(predictor, x)

    async def main() -> list[object]:
        try:
            return await asyncio.gather(*(request(x, 0.01 * i) for i, x in enumerate(photos)))
        finally:
            await batcher.close()

    answers = asyncio.run(main())
    assert batches == [9], batches  # 8 requests, 9 photos, one model call
    for x, answer in zip(photos, answers, strict=True):
        _assert_same(answer, predictor.score_photos(x))


def test_photos_arriving_while_the_model_is_busy_share_its_next_call(model_dir: Path) -> None:
    """The default (no waiting): the first photo runs at once, the ones that queue behind it go together."""
    predictor = Predictor(model_dir / "photos")
    xs = _tensors(6)
    batches: list[int] = []
    batcher = PhotoBatcher(max_batch=32, max_wait=0.0, observe=lambda n, waited: batches.append(n))

    async def main() -> list[object]:
        try:
            first = asyncio.create_task(batcher.score(predictor, xs[0]))
            await asyncio.sleep(0.002)  # the model is now busy with the first photo (about 10 ms)
            rest = [asyncio.create_task(batcher.score(predictor, x)) for x in xs[1:]]
            return await asyncio.gather(first, *rest)
        finally:
            await batcher.close()

    answers = asyncio.run(main())
    assert batches == [1, 5], batches
    for x, answer in zip(xs, answers, strict=True):
        _assert_same(answer, predictor.score_photos(x))


def test_a_request_alone_runs_at_once_and_a_waiting_one_is_held_at_most_max_wait(model_dir: Path) -> None:
    predictor = Predictor(model_dir / "photos")
    (x,) = _tensors(1)
    waits: list[float] = []
    batcher = PhotoBatcher(max_batch=32, max_wait=0.3, observe=lambda n, waited: waits.append(waited))

    async def main() -> None:
        try:
            await batcher.score(predictor, x)  # nobody else on the way: no wait at all
            with batcher.decoding():  # another request is on its way but never arrives
                await batcher.score(predictor, x)
            release = asyncio.Event()

            async def slow_upload() -> None:
                with batcher.decoding():
                    await release.wait()

            other = asyncio.create_task(slow_upload())
            await asyncio.sleep(0)
            task = asyncio.create_task(batcher.score(predictor, x))
            await asyncio.sleep(0.05)
            release.set()  # the other request fails its decode: the batch stops waiting for it
            await task
            await other
        finally:
            await batcher.close()

    asyncio.run(main())
    alone, held, released = waits
    assert alone < 0.05, waits
    assert 0.3 <= held < 0.3 + 0.15, waits  # waited the full max_wait for the one that never came
    assert 0.05 <= released < 0.25, waits  # stopped waiting once nobody else was on the way


def test_batching_off_runs_each_request_alone(model_dir: Path) -> None:
    predictor = Predictor(model_dir / "photos")
    calls: list[int] = []
    batcher = PhotoBatcher(max_batch=1, max_wait=0.1, observe=lambda n, waited: calls.append(n))
    xs = _tensors(3)

    async def main() -> list[object]:
        return await asyncio.gather(*(batcher.score(predictor, x) for x in xs))

    answers = asyncio.run(main())
    assert not batcher.enabled and calls == []
    for x, answer in zip(xs, answers, strict=True):
        _assert_same(answer, predictor.score_photos(x))


def test_concurrent_http_requests_are_batched_with_identical_answers(model_dir: Path, tmp_path: Path) -> None:
    """Over real HTTP: 8 concurrent uploads answer exactly as the same uploads sent one at a time
    by a server that does not batch, and the batch-size histogram shows batches of more than one."""
    photos = [photo_bytes(STYLES[i % 4], 40 + i, size=200) for i in range(8)]
    env = {"BUNGA_DATA_DIR": str(tmp_path / "collected_data"), "BUNGA_SERVE_KINDS": '["photos"]'}

    def answers(server: LiveServer, at_once: bool) -> list[list[dict[str, object]]]:
        def post(data: bytes) -> list[dict[str, object]]:
            response = httpx.post(
                f"{server.url}/predict/image?k=20", files={"file": ("p.jpg", data, "image/jpeg")}, timeout=60
            )
            assert response.status_code == 200, response.text
            return list(response.json()["results"][0]["top"])

        if not at_once:
            return [post(p) for p in photos]
        with concurrent.futures.ThreadPoolExecutor(len(photos)) as pool:
            return list(pool.map(post, photos))

    on = {**env, "BUNGA_PHOTO_BATCH_MAX": "32", "BUNGA_PHOTO_BATCH_WAIT_MS": "200"}
    batching = LiveServer(on, ["--model-dir", str(model_dir)], tmp_path)
    try:
        together = answers(batching, at_once=True)
        metrics = httpx.get(f"{batching.url}/metrics").text
    finally:
        batching.stop()
    alone_server = LiveServer(env, ["--model-dir", str(model_dir)], tmp_path)  # the default: no batching
    try:
        alone = answers(alone_server, at_once=False)
    finally:
        alone_server.stop()
    for batched, single in zip(together, alone, strict=True):
        assert [c["species"] for c in batched] == [c["species"] for c in single]
        got = np.array([c["probability"] for c in batched])
        # answers carry 6 decimals: equal to 1e-6, plus the rounding of the last digit
        np.testing.assert_allclose(got, [c["probability"] for c in single], atol=1.01e-6, rtol=0)
    count = next(line for line in metrics.splitlines() if line.startswith("bunga_photo_batch_size_count"))
    photos_total = next(line for line in metrics.splitlines() if line.startswith("bunga_photo_batch_size_sum"))
    assert float(photos_total.split()[-1]) == len(photos)
    assert float(count.split()[-1]) < len(photos), metrics  # fewer model calls than requests
