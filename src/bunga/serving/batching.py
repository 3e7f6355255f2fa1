"""Adaptive micro-batching of photo inference, one batcher per worker.

Photo requests decode their uploads in parallel (the threadpool), then hand the preprocessed
tensors to the batcher. One dispatcher task runs the model on everything queued for the same model
as one batch, one call at a time: photos that arrive while the model is busy share its next call.
With ``max_wait`` > 0 it also waits for more photos, but only while other photo requests are still
being decoded, and never longer than ``max_wait`` after the first queued photo arrived: a request
that is alone is dispatched at once. Each request gets back exactly its own rows of the batch's
scores. Off unless ``BUNGA_PHOTO_BATCH_MAX`` > 1 (docs/performance.md says why)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from starlette.concurrency import run_in_threadpool

from bunga.predict import PhotoScores, Predictor

BatchObserver = Callable[[int, float], None]  # (photos in the batch, seconds the first one waited)


@dataclass
class _Job:
    predictor: Predictor
    x: np.ndarray
    arrived: float
    future: asyncio.Future[PhotoScores] = field(repr=False)


def rows(scores: PhotoScores, start: int, stop: int) -> PhotoScores:
    """The scores of photos ``start:stop`` of a batch."""
    return PhotoScores(
        scores.probabilities[start:stop],
        scores.recognised[start:stop],
        scores.abstain_scores[start:stop],
        scores.not_flower[start:stop],
        scores.not_flower_scores[start:stop],
        None if scores.signatures is None else scores.signatures[start:stop],
        None if scores.logits is None else scores.logits[start:stop],
    )


class PhotoBatcher:
    """Collects concurrent photo requests into batches (``max_batch`` photos, ``max_wait`` seconds)."""

    def __init__(self, max_batch: int, max_wait: float, observe: BatchObserver = lambda n, waited: None) -> None:
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._observe = observe
        self._queue: deque[_Job] = deque()
        self._decoding = 0  # photo requests admitted but not yet queued: the batch may wait for them
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """False when batches of one are configured: requests then run the model on their own."""
        return self.max_batch > 1

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        """Mark a request as on its way (reading and decoding its photos) until the block ends."""
        self._decoding += 1
        try:
            yield
        finally:
            self._decoding -= 1
            if self._wake is not None:
                self._wake.set()  # a batch waiting for this request can stop waiting for it

    async def score(self, predictor: Predictor, x: np.ndarray) -> PhotoScores:
        """The model's scores for ``x`` (preprocessed photos), computed in a batch with others."""
        if not self.enabled:
            return await run_in_threadpool(predictor.score_photos, x)
        loop = asyncio.get_running_loop()
        self._ensure_dispatcher(loop)
        assert self._wake is not None
        job = _Job(predictor, x, loop.time(), loop.create_future())
        self._queue.append(job)
        self._wake.set()
        return await job.future

    async def close(self) -> None:
        """Stop the dispatcher; queued requests are answered with an error."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the service is shutting down"))

    def _ensure_dispatcher(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop, self._wake = loop, asyncio.Event()
            self._task = loop.create_task(self._dispatch(), name="bunga-photo-batcher")

    def _queued_photos(self) -> int:
        return sum(len(job.x) for job in self._queue)

    async def _dispatch(self) -> None:
        assert self._loop is not None and self._wake is not None
        loop, wake = self._loop, self._wake
        while True:
            if not self._queue:
                wake.clear()
                await wake.wait()
                continue
            deadline = self._queue[0].arrived + self.max_wait
            while self._decoding > 0 and self._queued_photos() < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), remaining)
            jobs = self._take()
            self._observe(sum(len(j.x) for j in jobs), loop.time() - jobs[0].arrived)
            await self._run(jobs)

    def _take(self) -> list[_Job]:
        """The first queued job and every later one for the same model that fits in the batch."""
        first = self._queue.popleft()
        jobs, size, kept = [first], len(first.x), deque[_Job]()
        while self._queue:
            job = self._queue.popleft()
            if job.predictor is first.predictor and size + len(job.x) <= self.max_batch:
                jobs.append(job)
                size += len(job.x)
            else:
                kept.append(job)
        self._queue.extendleft(reversed(kept))
        return jobs

    async def _run(self, jobs: list[_Job]) -> None:
        try:
            x = jobs[0].x if len(jobs) == 1 else np.concatenate([j.x for j in jobs])
            scores = await run_in_threadpool(jobs[0].predictor.score_photos, x)
        except Exception as err:  # each waiting request answers with the error, as it would alone
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        start = 0
        for job in jobs:
            stop = start + len(job.x)
            if not job.future.done():  # a request whose client went away was cancelled
                job.future.set_result(rows(scores, start, stop))
            start = stop
