"""Suite 7: memory per cached entry on the memory backend, and that max_size holds."""

from __future__ import annotations

import asyncio
import gc
import secrets
import sys
import time
import tracemalloc
from functools import cache
from typing import Any

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache import close_all
from jupyter_token_cache.tokens.service import CachedToken, TokenService

from . import progress

SCOPES = ("access:servers!user={u}", "read:users!user={u}", "read:users:activity!user={u}",
          "read:users:groups!user={u}", "read:users:name!user={u}")  # fmt: skip


@cache
def user_scopes(user: str) -> tuple[str, frozenset[str]]:
    """A user's name and scopes, one object each per user, as the hub's ORM and scope caches hold them."""
    return user, frozenset(s.format(u=user) for s in SCOPES)


def entry(i: int) -> tuple[Any, CachedToken, float]:
    """A notebook-token entry as the service stores it: one user per 10 sessions."""
    user, scopes = user_scopes(f"user{i // 10}")
    expires_at = time.time() + 86400
    key = TokenService.key(user, "notebook", secrets.token_hex(16), float(int(expires_at)), None, scopes)
    # fp: the row's fingerprint, 32 hex characters as the hub's lineage.fingerprint makes them
    value = CachedToken(secrets.token_hex(16), f"a{i}", expires_at, expires_at - 86400, secrets.token_hex(16))
    return key, value, expires_at


async def bytes_per_entry(n: int) -> dict[str, Any]:
    cache = TokenCache(backend="memory", max_size=n, namespace=f"mem{n}")
    entries = [entry(i) for i in range(n)]  # built before measuring: only what the cache keeps counts
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key, value, expires_at in entries:
        await cache.set(key, value, expires_at=expires_at)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # the keys and values themselves, which the cache holds but the caller built
    payload = _deep_size(entries)
    for key, value, expires_at in (entry(n + i) for i in range(n // 10)):  # 10% more than max_size
        await cache.set(key, value, expires_at=expires_at)
    result = {"entries": n, "bytes_per_entry_overhead": held / n, "bytes_per_entry_total": (held + payload) / n,
              "max_size_holds": cache.store.entries() == n}  # fmt: skip
    await close_all()
    return result


def _deep_size(entries: list[tuple[Any, CachedToken, float]]) -> int:
    """Bytes of the keys and values (strings, floats, tuples), each object counted once."""
    seen: set[int] = set()
    total = 0
    stack: list[Any] = [part for key, value, _ in entries for part in (key, value)]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, tuple):
            stack.extend(obj)
    return total


async def run(quick: bool) -> dict[str, Any]:
    sizes = (1_000, 10_000) if quick else (10_000, 100_000)
    figures = {}
    for n in sizes:
        progress.step(f"memory per entry at {n} entries")
        figures[str(n)] = await bytes_per_entry(n)
    return figures


if __name__ == "__main__":
    print(asyncio.run(run(True)))
