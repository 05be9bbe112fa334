"""BatchQueue: concurrent submissions share model calls, within max_batch and max_wait; a full queue
refuses at once; a failing call fails only its own requests."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from detect.serve.batching import BatchQueue, QueueFull


def _images(*values: int) -> list[np.ndarray]:
    return [np.full((2, 2, 3), value, np.uint8) for value in values]


class _Recorder:
    """predict = the first pixel of each image; records each call's batch size."""

    def __init__(self, seconds: float = 0.0):
        self.calls: list[int] = []
        self.seconds = seconds
        self.threads: set[str] = set()

    def __call__(self, images):
        self.calls.append(len(images))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        return [int(image[0, 0, 0]) for image in images]


def _run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_are_gathered_into_one_call():
    async def scenario():
        predict = _Recorder()
        queue = BatchQueue(predict, max_batch=8, max_wait_s=0.2)
        queue.start()
        results = await asyncio.gather(*(queue.submit(_images(value)) for value in range(6)))
        await queue.stop()
        return predict, results

    predict, results = _run(scenario())
    assert results == [[value] for value in range(6)]
    assert predict.calls == [6]
    assert predict.threads and all(name.startswith("detect-model") for name in predict.threads)


def test_batches_never_exceed_max_batch_and_keep_request_order():
    async def scenario():
        predict = _Recorder()
        queue = BatchQueue(predict, max_batch=3, max_wait_s=0.05)
        queue.start()
        results = await asyncio.gather(queue.submit(_images(1, 2, 3, 4)), queue.submit(_images(5, 6, 7)))
        await queue.stop()
        return predict, results

    predict, results = _run(scenario())
    assert results == [[1, 2, 3, 4], [5, 6, 7]]
    assert max(predict.calls) <= 3 and sum(predict.calls) == 7


def test_a_lone_request_waits_at_most_max_wait():
    async def scenario():
        queue = BatchQueue(_Recorder(), max_batch=8, max_wait_s=0.05)
        queue.start()
        started = time.monotonic()
        await queue.submit(_images(1))
        elapsed = time.monotonic() - started
        await queue.stop()
        return elapsed

    assert 0.04 <= _run(scenario()) < 1.0


def test_full_queue_refuses_at_once_and_recovers():
    async def scenario():
        queue = BatchQueue(_Recorder(seconds=0.2), max_batch=1, max_wait_s=0.0, capacity=2)
        queue.start()
        first = asyncio.ensure_future(queue.submit(_images(1)))
        await asyncio.sleep(0.05)  # the first image is in the model, the queue is empty again
        waiting = asyncio.ensure_future(queue.submit(_images(2, 3)))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull) as refused:
            await queue.submit(_images(4))
        results = await asyncio.gather(first, waiting)
        after = await queue.submit(_images(5))
        await queue.stop()
        return refused.value, results, after

    refused, results, after = _run(scenario())
    assert refused.retry_after_s >= 1
    assert results == [[1], [2, 3]] and after == [5]


def test_a_failing_model_call_fails_its_requests_and_the_worker_goes_on():
    calls = []

    def predict(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return [0] * len(images)

    async def scenario():
        queue = BatchQueue(predict, max_batch=4, max_wait_s=0.0)
        queue.start()
        with pytest.raises(RuntimeError, match="out of memory"):
            await queue.submit(_images(1))
        result = await queue.submit(_images(2))
        await queue.stop()
        return result

    assert _run(scenario()) == [0]


def test_cancelled_requests_are_not_run():
    async def scenario():
        predict = _Recorder(seconds=0.1)
        queue = BatchQueue(predict, max_batch=1, max_wait_s=0.0)
        queue.start()
        busy = asyncio.ensure_future(queue.submit(_images(1)))
        await asyncio.sleep(0.02)
        gone = asyncio.ensure_future(queue.submit(_images(2)))
        await asyncio.sleep(0)
        gone.cancel()
        await busy
        await queue.submit(_images(3))
        await queue.stop()
        return predict.calls

    assert _run(scenario()) == [1, 1]  # images 1 and 3; the cancelled 2 never reached the model


@pytest.mark.parametrize("options", [dict(max_batch=0), dict(max_batch=8, capacity=4), dict(max_wait_s=-1)])
def test_bad_settings_are_refused(options):
    with pytest.raises(ValueError):
        BatchQueue(_Recorder(), **options)
