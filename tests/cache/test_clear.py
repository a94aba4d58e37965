"""Behaviour 4: clearing everything or one user is O(1), by generations, and never flushes
the server (other namespaces and other applications' keys survive)."""

from __future__ import annotations

import asyncio
import time

import pytest

from ..conftest import SHARED_CACHE_BACKENDS
from .helpers import Creator, key


async def fill(cache, users=("alice", "bob")):
    for user in users:
        for kind in ("notebook", "internal"):
            await cache.set(
                key(user, kind), {"token": f"{user}-{kind}"}, expires_at=time.time() + 60
            )


async def test_clear_everything(cache):
    await fill(cache)
    assert await cache.clear() is True
    for user in ("alice", "bob"):
        for kind in ("notebook", "internal"):
            assert await cache.get(key(user, kind)) is None
    await cache.set(key(), {"token": "after"}, expires_at=time.time() + 60)
    assert await cache.get(key()) == {"token": "after"}


async def test_clear_one_user(cache):
    await fill(cache)
    await cache.clear(user="alice")
    assert await cache.get(key("alice", "notebook")) is None
    assert await cache.get(key("alice", "internal")) is None
    assert await cache.get(key("bob", "notebook")) == {"token": "bob-notebook"}
    assert await cache.get(key("bob", "internal")) == {"token": "bob-internal"}


async def test_value_created_across_a_clear_stays_invisible(cache):
    """A creator that started before the clear writes under the old generation."""
    # connect first (a cold Redis Cluster client loads its slot map): the creator must
    # really start before the clear below
    await cache.get(key("warm-up"))
    create = Creator(delay=0.3)
    running = asyncio.ensure_future(cache.get_or_create(key(), create))
    await asyncio.sleep(0.1)
    await cache.clear(user="alice")
    await running
    assert await cache.get(key()) is None


@pytest.mark.parametrize("backend", ["redis", "memcached"], indirect=True)
async def test_clear_leaves_other_namespaces_and_applications_alone(make_cache, backend, request):
    if backend == "redis":  # count only this test's commands: others inspect with KEYS
        request.getfixturevalue("redis_server").call("CONFIG", "RESETSTAT")
    ours, theirs = make_cache(), make_cache(namespace="another-hub")
    await fill(ours)
    await fill(theirs)
    store = ours.store
    await store.backend.set("other-application:data", "precious")
    await ours.clear()
    await ours.clear(user="bob")
    assert await theirs.get(key("alice")) == {"token": "alice-notebook"}
    assert await theirs.get(key("bob")) == {"token": "bob-notebook"}
    assert await store.backend.get("other-application:data") == "precious"
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        stats = server.call("INFO", "commandstats")
        assert not {"cmdstat_flushdb", "cmdstat_flushall", "cmdstat_keys"} & set(stats)
    else:
        server = request.getfixturevalue("memcached_server")
        stats = dict(line.split()[1:3] for line in server.ask("stats") if line.startswith("STAT"))
        assert stats["cmd_flush"] == "0"


@pytest.mark.parametrize("backend", ["redis", "memcached"], indirect=True)
async def test_clear_is_one_write_whatever_the_size(make_cache, backend, request):
    cache = make_cache()
    for i in range(300):
        await cache.set(key(f"user{i}"), {"token": i}, expires_at=time.time() + 60)
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        server.call("CONFIG", "RESETSTAT")
        await cache.clear()
        stats = server.call("INFO", "commandstats")
        # one script that SETs the generation and PUBLISHes it; the rest is the
        # inspecting client's own handshake and CONFIG
        ours = {
            c: v["calls"]
            for c, v in stats.items()
            if not c.startswith(("cmdstat_client", "cmdstat_hello", "cmdstat_config"))
        }
        assert ours == {"cmdstat_evalsha": 1, "cmdstat_set": 1, "cmdstat_publish": 1}
    else:
        server = request.getfixturevalue("memcached_server")

        def sets() -> int:
            stats = dict(
                line.split()[1:3] for line in server.ask("stats") if line.startswith("STAT")
            )
            return int(stats["cmd_set"]) + int(stats.get("delete_hits", 0))

        before = sets()
        await cache.clear()
        assert sets() - before == 1
    assert await cache.get(key("user7")) is None


@pytest.mark.parametrize("backend", SHARED_CACHE_BACKENDS, indirect=True)
async def test_lost_generation_key_hides_old_entries(make_cache, backend, request):
    """If the server evicts a generation key, old entries must not come back."""
    cache = make_cache()
    await cache.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    store = cache.store
    await store.backend.delete(store._global_name)
    assert await cache.get(key()) is None
