"""The dynamic batcher of `uer-ds serve` on its own (no HTTP): concurrent submissions share forwards of at
most max_batch items, each caller gets its own outputs back in order, a request larger than max_batch is
a batch of its own, a failing forward fails only its own callers, and stop() finishes what was queued."""
from __future__ import annotations

import asyncio
import threading

import pytest

from uer_ds.deploy.serve import Batcher


def run(coroutine):
    return asyncio.run(coroutine)


def recording_predict(calls):
    def predict(items):
        calls.append(list(items))
        return [f"out-{item}" for item in items]

    return predict


def test_concurrent_submissions_share_batches_within_max_batch():
    calls = []

    async def main():
        batcher = Batcher(recording_predict(calls), max_batch=16, max_wait_ms=50)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit([f"{i}a", f"{i}b", f"{i}c"]) for i in range(20)))
        await batcher.stop()
        return results, batcher.stats

    results, stats = run(main())
    assert results == [[f"out-{i}a", f"out-{i}b", f"out-{i}c"] for i in range(20)]
    assert all(len(call) <= 16 for call in calls) and sum(len(c) for c in calls) == 60
    assert len(calls) <= 5  # 60 items, 5 requests (15 items) per forward at most: 4 forwards, or 5
    assert stats.batches == len(calls) and stats.texts == 60 and stats.largest_batch == 15


def test_a_request_larger_than_max_batch_is_a_batch_of_its_own():
    calls = []

    async def main():
        batcher = Batcher(recording_predict(calls), max_batch=4, max_wait_ms=20)
        batcher.start()
        big, small = await asyncio.gather(batcher.submit(list(range(10))), batcher.submit(["x"]))
        await batcher.stop()
        return big, small

    big, small = run(main())
    assert big == [f"out-{i}" for i in range(10)] and small == ["out-x"]
    assert sorted(len(c) for c in calls) == [1, 10]


def test_a_failing_forward_fails_its_own_requests_and_the_next_batch_runs():
    seen = []

    def predict(items):
        seen.append(items)
        if "bad" in items:
            raise RuntimeError("model failed")
        return items

    async def main():
        batcher = Batcher(predict, max_batch=1, max_wait_ms=0)
        batcher.start()
        outcome = await asyncio.gather(batcher.submit(["bad"]), batcher.submit(["good"]), return_exceptions=True)
        await batcher.stop()
        return outcome

    bad, good = run(main())
    assert isinstance(bad, RuntimeError) and good == ["good"]


def test_stop_finishes_what_was_queued_and_ends_the_worker_thread():
    calls = []

    async def main():
        batcher = Batcher(recording_predict(calls), max_batch=2, max_wait_ms=10)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit([i])) for i in range(5)]
        await asyncio.sleep(0)  # queued, not yet collected
        await batcher.stop()
        return [p.result() for p in pending]

    assert run(main()) == [[f"out-{i}"] for i in range(5)]
    assert not [t for t in threading.enumerate() if t.name.startswith("uer-ds-predict")]


def test_settings_are_checked():
    with pytest.raises(ValueError, match=r"--max_batch_size has value 0: must be positive"):
        Batcher(lambda items: items, max_batch=0, max_wait_ms=1)
    with pytest.raises(ValueError, match=r"--max_wait_ms has value -1: must be >= 0"):
        Batcher(lambda items: items, max_batch=1, max_wait_ms=-1)
