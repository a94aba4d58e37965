"""Plain get/set/delete semantics, the same on every backend."""

from __future__ import annotations

import time

from jupyter_token_cache.cache import CacheKey

from .helpers import key


async def test_unknown_key_is_a_miss(cache):
    assert await cache.get(key("nobody")) is None


async def test_set_overwrites(cache):
    await cache.set(key(), {"token": "first"}, expires_at=time.time() + 60)
    await cache.set(key(), {"token": "second"}, expires_at=time.time() + 60)
    assert await cache.get(key()) == {"token": "second"}


async def test_keys_differ_in_every_part(cache):
    keys = [CacheKey("alice", "notebook", ("s1",)), CacheKey("bob", "notebook", ("s1",)),
            CacheKey("alice", "internal", ("s1",)), CacheKey("alice", "notebook", ("s2",)),
            CacheKey("alice", "notebook", ("s1", "read:users")),
            CacheKey("alice", "notebook", ("s1read:users",))]  # fmt: skip
    for i, k in enumerate(keys):
        await cache.set(k, {"i": i}, expires_at=time.time() + 60)
    for i, k in enumerate(keys):
        assert await cache.get(k) == {"i": i}


async def test_delete(cache):
    await cache.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    assert await cache.delete(key()) is True
    assert await cache.get(key()) is None
    assert await cache.delete(key()) is False


async def test_json_values_round_trip(cache):
    value = {"token": "t", "scopes": ["a", "b"], "n": 3, "f": 1.5, "none": None, "ok": True}
    await cache.set(key(), value, expires_at=time.time() + 60)
    assert await cache.get(key()) == value
