"""Bounded, batched encoding: one encoder, one thread, a queue with a limit.

Requests put their decoded images in the queue and wait. One worker takes what is waiting, up
to ``batch_size`` images, encodes them in one forward pass on a single thread (the model is
never run by two threads at once), and hands each request its rows. When ``limit`` images are
already waiting or being encoded, a new request is refused at once with 503 and
``Retry-After`` instead of joining a queue whose wait would exceed any client's patience.
"""
from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ApiError
from .metrics import Metrics


class EncodeQueue:
    """``await queue.encode(images)`` → float32 [len(images), D] rows from ``encode_fn``."""

    def __init__(self, encode_fn: Callable[[List[Any]], np.ndarray], batch_size: int, limit: int,
                 metrics: Metrics):
        self.encode_fn, self.batch_size, self.limit, self.metrics = encode_fn, int(batch_size), int(limit), metrics
        self.pending = 0                      # images waiting or being encoded
        self.batch_seconds = 0.05             # running mean of one batch's time: the Retry-After estimate
        self._executor: Optional[ThreadPoolExecutor] = None
        self._queue: Optional[asyncio.Queue] = None
        self._worker: Optional[asyncio.Task] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def _ensure_worker(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            # (re)started in the loop that serves: one per app run (tests open several)
            self._loop, self._queue = loop, asyncio.Queue()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unicom-encode")
            self._worker = loop.create_task(self._run(self._queue))
        assert self._queue is not None
        return self._queue

    def retry_after(self) -> int:
        """Seconds after which the queue has probably drained (at least 1)."""
        return max(1, math.ceil(self.pending / self.batch_size * self.batch_seconds))

    async def encode(self, images: Sequence[Any]) -> np.ndarray:
        """Encode ``images`` with the others waiting; raises ``ApiError`` 503 past the limit."""
        n = len(images)
        if n > self.limit:
            raise ApiError(413, "too_many_images", f"{n} images in one request; send at most {self.limit} "
                                                   "(--queue-limit)")
        if self.pending + n > self.limit:
            raise ApiError(503, "overloaded", f"the encoder queue is full ({self.pending} images waiting, "
                                              f"--queue-limit {self.limit}); retry later",
                           headers={"Retry-After": str(self.retry_after())})
        queue = self._ensure_worker()
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending += n
        self.metrics.queue.set(self.pending)
        try:
            queue.put_nowait((list(images), fut))
            return await fut
        finally:
            self.pending -= n
            self.metrics.queue.set(self.pending)

    async def _run(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs: List[Tuple[List[Any], asyncio.Future]] = [await queue.get()]
            count = len(jobs[0][0])
            while count < self.batch_size and not queue.empty():
                jobs.append(queue.get_nowait())
                count += len(jobs[-1][0])
            jobs = [(imgs, fut) for imgs, fut in jobs if not fut.done()]  # the client went away
            if not jobs:
                continue
            images = [im for imgs, _ in jobs for im in imgs]
            t0 = loop.time()
            try:
                with self.metrics.timed("encode"):
                    rows = await loop.run_in_executor(self._executor, self.encode_fn, images)
            except Exception:  # noqa: BLE001 (one request's image must not fail the others of its batch)
                await self._one_by_one(jobs)
                continue
            self.batch_seconds = 0.8 * self.batch_seconds + 0.2 * (loop.time() - t0)
            self.metrics.batch.observe(len(images))
            start = 0
            for imgs, fut in jobs:
                if not fut.done():
                    fut.set_result(rows[start:start + len(imgs)])
                start += len(imgs)

    async def _one_by_one(self, jobs: List[Tuple[List[Any], asyncio.Future]]) -> None:
        """Encode each request of a failed batch alone; a request that fails alone gets a 400."""
        loop = asyncio.get_running_loop()
        for imgs, fut in jobs:
            try:
                with self.metrics.timed("encode"):
                    rows = await loop.run_in_executor(self._executor, self.encode_fn, imgs)
            except ValueError as exn:  # the encoder cannot embed this image (``Searcher.embed``)
                if not fut.done():
                    fut.set_exception(ApiError(400, "bad_image", str(exn)))
                continue
            except Exception as exn:  # noqa: BLE001 (handed to the request: a 500 naming it)
                if not fut.done():
                    fut.set_exception(exn)
                continue
            if not fut.done():
                fut.set_result(rows)

    def close(self) -> None:
        """Stop the worker and its thread."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
