"""Behaviour 6: a backend that is down or frozen turns into misses; callers never see it;
the outage is logged once and counted; caching resumes by itself.

The memory backend cannot be down; these tests run on the shared backends.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from .helpers import Creator, key

pytestmark = pytest.mark.parametrize("backend", ["redis", "memcached"], indirect=True)


@pytest.fixture
def server(backend, request):
    return request.getfixturevalue(f"own_{backend}")


@pytest.fixture
def fast_cache(make_cache, server):
    return make_cache(url=server.url, operation_timeout=0.2, retry_interval=0.3)


async def wait_for_hit(cache, create, deadline=5.0) -> float:
    """Seconds until a lookup is served from the cache again."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        _, created = await cache.get_or_create(key(), create)
        if not created:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError("caching did not resume")


async def test_sigkill_mid_run_no_exception_then_hits_resume(fast_cache, server, caplog):
    caplog.set_level(logging.WARNING)
    create = Creator()
    outcomes = []
    for i in range(200):
        if i == 50:
            server.kill()
        if i == 150:
            server.start()
        value, created = await fast_cache.get_or_create(key(), create)
        outcomes.append(created)
        assert value["token"].startswith("secret-")
        await asyncio.sleep(0.005)
    assert outcomes[1:50] == [False] * 49  # hits before the crash
    assert any(outcomes[50:150])  # misses (new mints) while down
    assert await wait_for_hit(fast_cache, create) < 2.0
    stats = fast_cache.stats()
    assert stats["errors"] >= 1 and stats["available"]
    unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(unavailable) == 1, [r.getMessage() for r in caplog.records]
    assert any("reachable again" in r.getMessage() for r in caplog.records)


async def test_frozen_server_costs_at_most_one_timeout(fast_cache, server):
    create = Creator()
    await fast_cache.get_or_create(key(), create)
    server.pause()
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(fast_cache.get_or_create(key(f"u{i}"), create) for i in range(20))
        )
        elapsed = time.monotonic() - started
        assert all(created for _, created in results)
        assert elapsed < 0.2 * 2 + 0.3  # one operation_timeout, not one per call
        # during retry_interval the backend is not even tried
        started = time.monotonic()
        await fast_cache.get_or_create(key("another"), create)
        assert time.monotonic() - started < 0.05
    finally:
        server.resume()
    assert await wait_for_hit(fast_cache, create) < 2.0


async def test_plain_get_set_delete_clear_never_raise(fast_cache, server):
    server.kill()
    assert await fast_cache.get(key()) is None
    await fast_cache.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    assert await fast_cache.delete(key()) is False
    assert await fast_cache.clear() is False  # reported, not raised
    assert fast_cache.stats()["available"] is False


async def test_cache_works_when_server_starts_late(make_cache, server):
    server.kill()
    cache = make_cache(url=server.url, operation_timeout=0.2, retry_interval=0.2)
    create = Creator()
    assert (await cache.get_or_create(key(), create))[1]
    server.start()
    assert await wait_for_hit(cache, create) < 2.0


async def test_cancelled_calls_do_not_poison_connections(fast_cache, server):
    """A call cancelled mid-reply must not leave its reply for the next call to read."""
    for i in range(20):
        await fast_cache.set(key(f"u{i}"), {"token": f"t{i}"}, expires_at=time.time() + 60)
    server.pause()
    pending = [asyncio.ensure_future(fast_cache.get(key(f"u{i}"))) for i in range(8)]
    await asyncio.sleep(0.05)
    for task in pending:
        task.cancel()  # the caller hangs up, not our timeout
    await asyncio.gather(*pending, return_exceptions=True)
    server.resume()
    for _ in range(3):
        for i in range(20):
            assert await fast_cache.get(key(f"u{i}")) == {"token": f"t{i}"}
    assert fast_cache.stats()["errors"] == 0


@pytest.mark.parametrize("lost", ["unlock", "lock"])
async def test_a_lease_stranded_by_a_failed_call_does_not_hold_up_the_next_creation(
    make_cache, server, lost
):
    """A creator whose lock or release call failed (the backend froze for a moment) may
    leave its lease behind; the next creation of that key here must not wait it out."""
    cache = make_cache(url=server.url, operation_timeout=0.2, retry_interval=0.2,
                       lock_timeout=5.0)  # fmt: skip
    store = cache.store
    if lost == "unlock":
        assert await store.try_lock(key(), "first") is True
        server.pause()
        await store.unlock(key(), "first")  # times out: the lease stays on the backend
    else:
        server.pause()
        assert await store.try_lock(key(), "first") is None  # fail open
        server.resume()
        await store._add(store._lock_name(key()), "first", store._ttl(5))  # as if it had landed
        server.pause()
    server.resume()
    await asyncio.sleep(0.3)  # past retry_interval: the backend is asked again
    started = time.monotonic()
    _, created = await cache.get_or_create(key(), Creator())
    assert created
    assert time.monotonic() - started < 1.0  # not the 5 s lease
    assert await store.try_lock(key(), "next") is True  # nothing of ours is left behind
