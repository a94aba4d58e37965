"""Suite 8: the storage layer alone — our hits against plain caches and raw clients."""

from __future__ import annotations

import time
from typing import Any

import aiomcache
import cachetools
import redis.asyncio as redis_asyncio
from aiocache import SimpleMemoryCache
from cryptography.fernet import Fernet

from jupyter_token_cache import CacheKey, TokenCache
from jupyter_token_cache.cache import close_all
from tests.servers import MemcachedServer, RedisServer

from .report import Ratio
from .timing import Figures, interleaved, throughput

KEY = CacheKey("alice", "notebook", ("session-123", "1767225600.0"))
VALUE = {
    "token": "0123456789abcdef0123456789abcdef",
    "id": "a42",
    "expires_at": time.time() + 86400,
    "scopes": ["access:servers!user=alice", "read:users!user=alice"],
}


async def run(quick: bool) -> dict[str, dict[str, Figures]]:
    rounds, per_round = (3, 300) if quick else (30, 2000)
    net_rounds, net_per_round = (3, 100) if quick else (20, 500)
    groups: dict[str, dict[str, Figures]] = {}

    # memory: our hit, against a dict (the floor), cachetools, aiocache with its defaults
    ours = TokenCache(backend="memory")
    await ours.set(KEY, VALUE, expires_at=VALUE["expires_at"])
    ttl_cache: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(10_000, 3600)
    ttl_cache[KEY] = VALUE
    plain = {KEY: VALUE}
    simple = SimpleMemoryCache()  # defaults: 5 s wait_for timeout on every call
    await simple.set("k", VALUE)
    groups["memory hit"] = await interleaved(
        {
            "jupyter-token-cache memory": lambda: ours.get(KEY),
            "cachetools.TTLCache.get": lambda: ttl_cache.get(KEY),
            "aiocache SimpleMemoryCache (defaults)": lambda: simple.get("k"),
            "dict.get (floor)": lambda: plain.get(KEY),
        },
        rounds=rounds,
        per_round=per_round,
        batch=100,
    )

    key = Fernet.generate_key().decode()
    with_servers = []
    try:
        redis_server = RedisServer().start()
        with_servers.append(redis_server)
        memcached_server = MemcachedServer().start()
        with_servers.append(memcached_server)

        on_redis = TokenCache(backend="redis", url=redis_server.url, encryption_key=key)
        await on_redis.set(KEY, VALUE, expires_at=VALUE["expires_at"])
        # the round-trip path: no local copies (the default keeps one while notified)
        round_trip = TokenCache(backend="redis", url=redis_server.url, encryption_key=key, local_cache=False)
        raw_redis = redis_asyncio.Redis(host="127.0.0.1", port=redis_server.port)
        envelope = await on_redis.store.backend.client.get(on_redis.store._entry_name(KEY))
        await raw_redis.set("raw", envelope)  # same bytes as our entry
        contenders = {
            "jupyter-token-cache redis (local copy)": lambda: on_redis.get(KEY),
            "jupyter-token-cache redis (round trip)": lambda: round_trip.get(KEY),
            "redis.asyncio GET (raw)": lambda: raw_redis.get("raw"),
        }
        groups["redis hit"] = await interleaved(contenders, rounds=net_rounds, per_round=net_per_round)
        total = 500 if quick else 5000
        await throughput(contenders, groups["redis hit"], total=total)
        await raw_redis.aclose()

        on_memcached = TokenCache(
            backend="memcached", url=memcached_server.url, encryption_key=key
        )
        await on_memcached.set(KEY, VALUE, expires_at=VALUE["expires_at"])
        raw_memcached = aiomcache.Client("127.0.0.1", memcached_server.port)
        envelope = await on_memcached.store.backend.get(on_memcached.store._entry_name(KEY))
        await raw_memcached.set(b"raw", envelope.encode())
        contenders = {
            "jupyter-token-cache memcached": lambda: on_memcached.get(KEY),
            "aiomcache get (raw)": lambda: raw_memcached.get(b"raw"),
        }
        groups["memcached hit"] = await interleaved(contenders, rounds=net_rounds, per_round=net_per_round)
        await throughput(contenders, groups["memcached hit"], total=total)
        await raw_memcached.close()
    finally:
        await close_all()
        for server in with_servers:
            server.stop()
    return groups


RATIOS = [
    Ratio("memory hit / cachetools p50", "memory hit", "jupyter-token-cache memory",
          "cachetools.TTLCache.get", 1.5),
    Ratio("memory hit / aiocache SimpleMemoryCache p50", "memory hit", "jupyter-token-cache memory",
          "aiocache SimpleMemoryCache (defaults)"),
    Ratio("memory hit / dict.get p50", "memory hit", "jupyter-token-cache memory", "dict.get (floor)"),
    Ratio("redis hit, round trip / raw GET p50", "redis hit", "jupyter-token-cache redis (round trip)",
          "redis.asyncio GET (raw)", 1.25),
    Ratio("redis hit, local copy / raw GET p50", "redis hit", "jupyter-token-cache redis (local copy)",
          "redis.asyncio GET (raw)"),
    Ratio("memcached hit / raw aiomcache get p50", "memcached hit", "jupyter-token-cache memcached",
          "aiomcache get (raw)"),
]  # fmt: skip
