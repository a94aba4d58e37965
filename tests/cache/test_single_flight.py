"""Behaviour 5: one creator per key — in a process, across processes, and failing open."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import SHARED_CACHE_BACKENDS
from .helpers import Creator, key

HERE = Path(__file__).parent


async def test_thousand_concurrent_callers_one_creation(make_cache):
    # 5 s a call: the burst must queue, not fail, and on a loaded machine the default
    # 0.5 s can run out while it queues (a timeout would be an error, failing open)
    cache = make_cache(operation_timeout=5)
    create = Creator(delay=0.05)
    results = await asyncio.gather(*(cache.get_or_create(key(), create) for _ in range(1000)))
    assert create.calls == 1
    assert {r[0]["token"] for r in results} == {"secret-1"}
    assert sum(created for _, created in results) == 1
    assert cache.stats()["creations"] == 1
    assert cache.stats()["errors"] == 0  # a burst queues for connections, it does not fail


async def test_different_keys_create_separately(cache):
    create = Creator(delay=0.02)
    await asyncio.gather(*(cache.get_or_create(key(f"u{i % 5}"), create) for i in range(100)))
    assert create.calls == 5


async def test_cancelled_caller_does_not_cancel_the_others(cache):
    create = Creator(delay=0.3)
    leader = asyncio.ensure_future(cache.get_or_create(key(), create))
    await asyncio.sleep(0.05)
    follower = asyncio.ensure_future(cache.get_or_create(key(), create))
    await asyncio.sleep(0.05)
    leader.cancel()
    value, created = await follower
    assert value == {"token": "secret-1"} and create.calls == 1
    assert await cache.get(key()) == {"token": "secret-1"}


async def test_creator_error_reaches_every_caller_then_retries(cache):
    calls = 0

    async def failing():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise RuntimeError("hub said no")

    results = await asyncio.gather(
        *(cache.get_or_create(key(), failing) for _ in range(20)), return_exceptions=True
    )
    assert calls == 1 and all(isinstance(r, RuntimeError) for r in results)
    value, created = await cache.get_or_create(key(), Creator())
    assert created


async def test_rejected_entry_is_replaced_once(cache):
    """accept() refusing a cached value (e.g. past half-life) gives one new creation."""
    await cache.get_or_create(key(), Creator())
    create = Creator(value={"token": "fresh"})
    results = await asyncio.gather(
        *(cache.get_or_create(key(), create, accept=lambda v: v["token"] == "fresh")
          for _ in range(50))
    )  # fmt: skip
    assert create.calls == 1 and {r[0]["token"] for r in results} == {"fresh"}


async def test_async_accept(cache):
    async def accept(value):
        await asyncio.sleep(0)
        return False

    await cache.get_or_create(key(), Creator())
    create = Creator()
    assert (await cache.get_or_create(key(), create, accept=accept))[1] is True


def run_workers(settings: dict, n_processes: int, callers: int) -> list[dict]:
    """Start processes that each run ``callers`` concurrent get_or_create at one instant."""
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "worker.py"), json.dumps(settings), str(callers),
             str(start_at)],
            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        for _ in range(n_processes)
    ]  # fmt: skip
    return [json.loads(p.communicate(timeout=60)[0]) for p in procs]


@pytest.mark.parametrize("backend", SHARED_CACHE_BACKENDS, indirect=True)
async def test_two_processes_two_hundred_callers_each_one_creation(make_cache, backend):
    cache = make_cache()
    settings = {name: getattr(cache, name) for name in ("backend", "url", "namespace",
                                                         "encryption_key")}  # fmt: skip
    reports = run_workers(settings, 2, 200)
    assert sum(r["creations"] for r in reports) == 1, reports
    assert len({token for r in reports for token in r["tokens"]}) == 1, reports
    assert all(r["errors"] == 0 for r in reports)


@pytest.mark.parametrize("backend", SHARED_CACHE_BACKENDS, indirect=True)
async def test_lease_held_by_a_dead_process_does_not_block_forever(make_cache):
    cache = make_cache(lock_timeout=1.0)
    store = cache.store
    assert await store.try_lock(key(), "someone-who-died") is True
    started = time.monotonic()
    value, created = await cache.get_or_create(key(), Creator())
    assert created and time.monotonic() - started < 3


@pytest.mark.parametrize("backend", SHARED_CACHE_BACKENDS, indirect=True)
async def test_waiter_takes_the_value_another_process_created(make_cache):
    cache = make_cache()
    store = cache.store
    assert await store.try_lock(key(), "other-process") is True

    async def other_process_creates():
        await asyncio.sleep(0.3)
        await cache.set(key(), {"token": "from-elsewhere"}, expires_at=time.time() + 60)
        await store.unlock(key(), "other-process")

    create = Creator()
    _, (value, created) = await asyncio.gather(
        other_process_creates(), cache.get_or_create(key(), create)
    )
    assert value == {"token": "from-elsewhere"} and not created and create.calls == 0


@pytest.mark.parametrize("backend", ["redis", "memcached"], indirect=True)
async def test_lock_problem_fails_open(make_cache, backend, request):
    server = request.getfixturevalue(f"own_{backend}")
    cache = make_cache(url=server.url, operation_timeout=0.2)
    server.kill()
    create = Creator()
    started = time.monotonic()
    value, created = await cache.get_or_create(key(), create)
    assert created and create.calls == 1 and time.monotonic() - started < 2
