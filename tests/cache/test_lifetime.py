"""Behaviour 1: an entry carries its token's expiry, is never returned after it, and its
backend TTL is min(ttl, expires_at - now)."""

from __future__ import annotations

import asyncio
import time
import types

import pytest

from jupyter_token_cache.cache import shared

from ..conftest import SHARED_CACHE_BACKENDS
from .helpers import Creator, key


async def test_hit_before_expiry_miss_after(cache):
    await cache.set(key(), {"token": "t"}, expires_at=time.time() + 1.5)
    assert await cache.get(key()) == {"token": "t"}
    await asyncio.sleep(1.6)
    assert await cache.get(key()) is None


async def test_expiry_checked_on_read_without_loop_running(cache):
    """aiocache's memory TTL fires only while the loop runs; a blocked loop must not matter."""
    await cache.set(key(), {"token": "t"}, expires_at=time.time() + 1.1)
    time.sleep(1.2)  # block the loop: no timer can fire
    assert await cache.get(key()) is None


async def test_already_expired_is_not_stored(cache):
    await cache.set(key(), {"token": "t"}, expires_at=time.time() - 1)
    assert await cache.get(key()) is None


async def test_ttl_bounds_entries_with_longer_tokens(make_cache):
    cache = make_cache(ttl=1)
    await cache.set(key(), {"token": "t"}, expires_at=time.time() + 3600)
    assert await cache.get(key()) is not None
    await asyncio.sleep(2.1)  # memcached TTLs have whole-second resolution
    assert await cache.get(key()) is None


@pytest.mark.parametrize("backend", SHARED_CACHE_BACKENDS, indirect=True)
async def test_expired_entry_still_on_server_is_a_miss(cache, monkeypatch):
    """The envelope's expiry is checked on read, whatever the server's TTL says."""
    now = time.time()
    # Write while the clock reads an hour ago: the server TTL is an hour too long.
    monkeypatch.setattr(
        shared, "time", types.SimpleNamespace(time=lambda: now - 3600, monotonic=time.monotonic)
    )
    await cache.set(key(), {"token": "t"}, expires_at=now - 1)
    monkeypatch.setattr(shared, "time", time)
    assert await cache.get(key()) is None


async def test_backend_ttl_never_exceeds_token(backend, request, make_cache):
    """Read the TTL the server holds: it must be <= the token's remaining lifetime."""
    cache = make_cache(ttl=3600)
    await cache.set(key(), {"token": "t"}, expires_at=time.time() + 30)
    store = cache.store
    if backend.startswith("redis"):  # asked through the store's own client: any topology
        pttl = await store.backend.client.pttl(store._entry_name(key()))
        assert 0 < pttl <= 30_000
    elif backend == "memcached":
        server = request.getfixturevalue("memcached_server")
        exp = server.keys()[store._entry_name(key())]
        assert 0 < exp - time.time() <= 31
    else:
        _, deadline, *_ = store._data[key()]
        assert deadline <= time.time() + 30


async def test_get_or_create_recreates_after_expiry(cache):
    create = Creator(lifetime=1.1)
    assert (await cache.get_or_create(key(), create))[1] is True
    assert (await cache.get_or_create(key(), create))[1] is False
    await asyncio.sleep(1.2)
    value, created = await cache.get_or_create(key(), create)
    assert created and value == {"token": "secret-2"}
