"""Behaviour 7: hits, misses, creations, evictions, errors, entries — as a dict and in Prometheus."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, generate_latest

from jupyter_token_cache import metrics

from .helpers import Creator, key


async def test_stats_dict_counts_every_event(cache, backend):
    create = Creator()
    await cache.get_or_create(key(), create)  # miss + creation
    await cache.get_or_create(key(), create)  # hit
    await cache.get(key("nobody"))  # miss
    await cache.delete(key())  # eviction
    stats = cache.stats()
    # Sentinel and Cluster are the "redis" backend with another URL
    assert stats["backend"] == backend.partition("-")[0] and stats["enabled"] is True
    assert (stats["hits"], stats["misses"], stats["creations"], stats["evictions"]) == (1, 2, 1, 1)
    assert stats["errors"] == 0
    assert stats["entries"] == (0 if backend == "memory" else None)
    assert stats["by_kind"]["notebook"]["hits"] == 1


async def test_prometheus_metrics(cache, backend):
    metrics.register()
    metrics.register()  # twice is harmless
    await cache.get_or_create(key("a", "internal"), Creator())
    await cache.get_or_create(key("a", "internal"), Creator())
    text = generate_latest(REGISTRY).decode()
    backend = backend.partition("-")[0]  # Sentinel and Cluster are "redis"
    assert f'jupyterhub_token_cache_hits_total{{backend="{backend}",kind="internal"}}' in text
    assert f'jupyterhub_token_cache_mints_total{{backend="{backend}",kind="internal"}}' in text
    assert f'jupyterhub_token_cache_backend_up{{backend="{backend}"}} 1.0' in text


async def test_disabled_cache_misses_and_stores_nothing(make_cache):
    cache = make_cache(enabled=False)
    create = Creator()
    await cache.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    assert await cache.get(key()) is None
    assert (await cache.get_or_create(key(), create))[1] is True
    assert (await cache.get_or_create(key(), create))[1] is True
    assert create.calls == 2
    assert cache.stats()["hits"] == 0 and cache.stats()["enabled"] is False
