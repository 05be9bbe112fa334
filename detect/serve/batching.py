"""Gather images from concurrent requests into batches: one model call for many requests.

A request puts its images in a bounded queue and awaits one future per image. A worker task takes
the first waiting image, then waits up to `max_wait_s` (counted from that image's arrival) for more,
until it holds `max_batch` images; it then runs `predict` on them in a thread of its own, so the
event loop keeps accepting requests while the model works. A request whose images do not fit in the
queue is refused at once with QueueFull (the server answers 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


class QueueFull(Exception):
    """The queue cannot take a request's images now. `retry_after_s`: a whole-second estimate of when
    it will have room."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"the server is busy; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Item:
    image: np.ndarray
    future: asyncio.Future
    arrived: float


class BatchQueue:
    """`await queue.submit(images)` -> predict's results for those images, in their order.

    predict: list of HxWx3 uint8 RGB arrays -> one result per array (called with 1..max_batch arrays,
    on one worker thread: the model never runs twice at once). `on_batch(size)` is called after
    each model call (for the batch size histogram).
    """

    def __init__(self, predict: Callable[[list[np.ndarray]], list], max_batch: int = 8, max_wait_s: float = 0.01,
                 capacity: int = 64, on_batch: Callable[[int], None] | None = None):
        if max_batch < 1 or capacity < max_batch or max_wait_s < 0:
            raise ValueError(f"need 1 <= max_batch <= capacity and max_wait_s >= 0, got max_batch={max_batch}, "
                             f"capacity={capacity}, max_wait_s={max_wait_s}")
        self.predict, self.max_batch, self.max_wait_s, self.capacity = predict, max_batch, max_wait_s, capacity
        self.on_batch = on_batch
        self._pending: deque[_Item] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._seconds_per_batch = 0.1  # running estimate, for Retry-After

    @property
    def depth(self) -> int:
        """Images waiting for the model (not counting the batch it is running)."""
        return len(self._pending)

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect-model")
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the worker; images still waiting get a RuntimeError."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def run_once(self, images: Sequence[np.ndarray]) -> list:
        """predict(images) on the model thread, outside the queue (the warm-up call at start)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.predict, list(images))

    async def submit(self, images: Sequence[np.ndarray]) -> list:
        """Queue the images and wait for their results; QueueFull at once when they do not fit."""
        if self._worker is None:
            raise RuntimeError("BatchQueue.start() was not called")
        self.ensure_room(len(images))
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        items = [_Item(image, loop.create_future(), now) for image in images]
        self._pending.extend(items)
        self._arrived.set()
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        except asyncio.CancelledError:  # the client went away: its images need no model time
            for item in items:
                item.future.cancel()
            raise

    def ensure_room(self, count: int) -> None:
        """QueueFull when `count` more images would not fit now (a request checks before it spends time
        decoding its images, and `submit` checks again)."""
        if len(self._pending) + count > self.capacity:
            raise QueueFull(self._retry_after_s())

    def _retry_after_s(self) -> int:
        batches_ahead = math.ceil((len(self._pending) + 1) / self.max_batch)
        return max(1, math.ceil(batches_ahead * self._seconds_per_batch))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            started = time.monotonic()
            try:
                results = await loop.run_in_executor(self._executor, self.predict, [item.image for item in batch])
            except Exception as error:  # the requests answer 500; the worker keeps serving
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            finally:
                self._seconds_per_batch = 0.8 * self._seconds_per_batch + 0.2 * (time.monotonic() - started)
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for item, result in zip(batch, results):
                if not item.future.done():
                    item.future.set_result(result)

    async def _next_batch(self) -> list[_Item]:
        """Up to max_batch live items: wait for the first, then until the batch is full or the first
        has waited max_wait_s."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        deadline = self._pending[0].arrived + self.max_wait_s
        while len(self._pending) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        batch = []
        while self._pending and len(batch) < self.max_batch:
            item = self._pending.popleft()
            if not item.future.cancelled():
                batch.append(item)
        return batch
