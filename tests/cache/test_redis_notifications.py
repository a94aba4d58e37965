"""Redis: generations learnt from notifications; server-checked lookups when they may be missed."""

from __future__ import annotations

import asyncio
import time

import pytest

from .helpers import key

pytestmark = pytest.mark.parametrize("backend", ["redis"], indirect=True)


async def until(predicate, seconds=3.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.01)
    return False


async def live(cache) -> bool:
    await cache.get(key("nobody"))  # starts the subscription
    return cache.store.notified


@pytest.fixture
async def pair(make_cache):
    """Two stores on one namespace, as two hub processes would have."""
    first, second = make_cache(retry_interval=0.2), make_cache(retry_interval=0.21)
    assert first.store is not second.store
    assert await until(lambda: live(first)) and await until(lambda: live(second))
    return first, second


async def test_clear_elsewhere_is_seen_through_its_notice(pair):
    first, second = pair
    await first.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    assert await first.get(key()) == {"token": "t"}
    await second.clear(user="alice")
    started = time.monotonic()
    assert await until(lambda: _missing(first))
    assert time.monotonic() - started < 0.5


async def _missing(cache) -> bool:
    return await cache.get(key()) is None


async def test_hit_is_one_get_while_notified(make_cache, redis_server):
    first = make_cache(local_cache=False)
    assert await until(lambda: live(first))
    await first.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    assert await first.get(key())  # learns the generations
    redis_server.call("CONFIG", "RESETSTAT")
    for _ in range(10):
        assert await first.get(key()) == {"token": "t"}
    stats = redis_server.call("INFO", "commandstats")
    assert stats["cmdstat_get"]["calls"] == 10
    assert "cmdstat_evalsha" not in stats


async def test_lost_subscription_falls_back_to_server_checks(pair, redis_server):
    first, second = pair
    await first.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    assert await first.get(key())
    redis_server.call("CLIENT", "KILL", "TYPE", "pubsub")
    assert await until(lambda: _not_live(first), 1.0)
    await second.clear(user="alice")  # first cannot hear this notice
    assert await first.get(key()) is None  # ...but asks the server, so it is not fooled
    assert await until(lambda: live(first))  # and subscribes again by itself
    await first.set(key(), {"token": "t2"}, expires_at=time.time() + 60)
    assert await first.get(key()) == {"token": "t2"}
    await second.clear()
    assert await until(lambda: _missing(first))


async def _not_live(cache) -> bool:
    return not cache.store.notified


async def test_local_copy_hit_needs_no_round_trip(pair, redis_server):
    first, _ = pair
    await first.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    assert await first.get(key()) == {"token": "t"}  # read once: copied
    redis_server.call("CONFIG", "RESETSTAT")
    for _ in range(10):
        assert await first.get(key()) == {"token": "t"}
    assert "cmdstat_get" not in redis_server.call("INFO", "commandstats")


async def test_write_or_delete_elsewhere_evicts_the_copy(pair):
    first, second = pair
    await first.set(key(), {"token": "t1"}, expires_at=time.time() + 60)
    assert await first.get(key()) == {"token": "t1"}
    await second.set(key(), {"token": "t2"}, expires_at=time.time() + 60)
    assert await until(lambda: _is(first, {"token": "t2"}), 0.5)
    assert await first.get(key()) == {"token": "t2"}
    await second.delete(key())
    assert await until(lambda: _missing(first), 0.5)


async def test_copy_never_outlives_its_token(pair):
    first, _ = pair
    await first.set(key(), {"token": "t"}, expires_at=time.time() + 0.3)
    assert await first.get(key()) == {"token": "t"}
    await asyncio.sleep(0.35)
    assert await first.get(key()) is None


async def test_lost_subscription_drops_the_copies(pair, redis_server):
    first, second = pair
    await first.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    assert await first.get(key())
    redis_server.call("CLIENT", "KILL", "TYPE", "pubsub")
    assert await until(lambda: _not_live(first), 1.0)
    await second.delete(key())  # first cannot hear this notice...
    assert await first.get(key()) is None  # ...and has no copy left to be fooled by


async def _is(cache, value) -> bool:
    return await cache.get(key()) == value
