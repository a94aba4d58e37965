"""The one-timer deadline queue behind every shared-backend call."""

from __future__ import annotations

import asyncio
import time

import pytest

from jupyter_token_cache.cache.deadlines import Deadlines


async def guarded(deadlines: Deadlines, seconds: float) -> str:
    task = deadlines.start()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if deadlines.finish(task):
            return "timed out"
        raise
    deadlines.finish(task)
    return "done"


async def test_calls_past_the_limit_time_out_and_others_finish():
    deadlines = Deadlines(0.2)
    started = time.monotonic()
    results = await asyncio.gather(
        *(guarded(deadlines, 1.0 if i % 2 else 0.05) for i in range(100))
    )
    assert results.count("timed out") == 50 and results.count("done") == 50
    assert time.monotonic() - started < 0.5  # one limit, not one per call


async def test_outside_cancellation_is_not_swallowed():
    deadlines = Deadlines(5)
    task = asyncio.ensure_future(guarded(deadlines, 1.0))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not deadlines._due and not deadlines._expired


async def test_timer_rearms_for_staggered_calls():
    deadlines = Deadlines(0.15)
    first = asyncio.ensure_future(guarded(deadlines, 1.0))
    await asyncio.sleep(0.1)
    second = asyncio.ensure_future(guarded(deadlines, 1.0))
    assert await first == "timed out"
    t = time.monotonic()
    assert await second == "timed out"
    assert time.monotonic() - t < 0.15
    assert deadlines._timer is None
