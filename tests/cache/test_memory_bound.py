"""Behaviour 2: the memory backend holds at most max_size entries, LRU first out, no timers."""

from __future__ import annotations

import asyncio
import time

import pytest

from .helpers import key

pytestmark = pytest.mark.parametrize("backend", ["memory"], indirect=True)


async def test_ten_times_max_size_never_exceeds_bound(make_cache):
    cache = make_cache(max_size=500)
    peak = 0
    for i in range(5000):
        await cache.set(key(f"user{i}"), {"token": i}, expires_at=time.time() + 60)
        peak = max(peak, cache.stats()["entries"])
    stats = cache.stats()
    assert peak == 500
    assert stats["entries"] == 500
    assert stats["evictions"] == 4500
    # the newest 500 survive, the oldest went first
    assert await cache.get(key("user4999")) == {"token": 4999}
    assert await cache.get(key("user0")) is None


async def test_least_recently_used_goes_first(make_cache):
    cache = make_cache(max_size=3)
    for name in ("a", "b", "c"):
        await cache.set(key(name), {"token": name}, expires_at=time.time() + 60)
    assert await cache.get(key("a"))  # a is now the most recently used
    await cache.set(key("d"), {"token": "d"}, expires_at=time.time() + 60)
    assert await cache.get(key("b")) is None
    assert await cache.get(key("a")) and await cache.get(key("c")) and await cache.get(key("d"))


async def test_no_per_key_timers(make_cache):
    cache = make_cache()
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    for i in range(1000):
        await cache.set(key(f"u{i}"), {"token": i}, expires_at=time.time() + 60)
    assert len(loop._scheduled) == before  # type: ignore[attr-defined]


async def test_evictions_counted_per_kind(make_cache):
    cache = make_cache(max_size=1)
    await cache.set(key("a", "internal"), {"t": 1}, expires_at=time.time() + 60)
    await cache.set(key("b", "internal"), {"t": 2}, expires_at=time.time() + 60)
    assert cache.stats()["by_kind"]["internal"]["evictions"] == 1
