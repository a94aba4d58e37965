"""A load of cache requests that runs across a Redis failover, and what it saw."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache import CacheKey
from jupyter_token_cache.cache.shared import FAILED

USERS = [f"user{i}" for i in range(20)]
#: one counter for every load: each minted token is unique in the test session
_MINTED = itertools.count()


def key_of(user: str) -> CacheKey:
    return CacheKey(user, "notebook", ("session",))


@dataclass
class Served:
    started: float
    user: str
    token: str
    hit: bool


@dataclass
class Load:
    """``requests`` get_or_create calls at ``concurrency``, paced to last ``seconds``."""

    cache: TokenCache
    requests: int = 1000
    concurrency: int = 10
    seconds: float = 8.0
    served: list[Served] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    async def _create(self, user: str) -> tuple[dict[str, str], float]:
        return {"token": f"{user}-{next(_MINTED)}"}, time.time() + 3600

    async def _worker(self, n: int) -> None:
        pause = self.seconds * self.concurrency / self.requests
        for i in range(n, self.requests, self.concurrency):
            user = USERS[i % len(USERS)]
            started = time.monotonic()
            try:
                value, created = await self.cache.get_or_create(
                    key_of(user), lambda user=user: self._create(user)
                )
            except Exception as exc:  # noqa: BLE001 - counted: the figure must be 0
                self.errors.append(exc)
            else:
                self.served.append(Served(started, user, value["token"], not created))
            await asyncio.sleep(pause)

    async def run(self) -> None:
        await asyncio.gather(*(self._worker(n) for n in range(self.concurrency)))

    def first_hit_after(self, moment: float) -> float | None:
        """When the first request started after ``moment`` that was a hit, or None."""
        hits = [s.started for s in self.served if s.hit and s.started >= moment]
        return min(hits) if hits else None

    def served_after(self, moment: float, token: str) -> list[Served]:
        return [s for s in self.served if s.started >= moment and s.token == token]


async def revoke(
    cache: TokenCache, user: str, how: str, until: float
) -> tuple[str | None, float | None]:
    """Revoke ``user``'s cached token (``delete`` its entry or ``clear`` the user), retrying
    until the cache acknowledges it or ``until`` (monotonic); return (the token that was
    cached, when the revocation was acknowledged)."""
    value = await cache.get(key_of(user))
    token = value["token"] if value else None
    store = cache.store
    if how == "delete":
        # TokenCache.delete answers False both for "not there" and "not done": run the
        # store's guarded call itself to tell them apart
        name = store._entry_name(key_of(user))
        args = (store._change, store.DELETE, name, store._channel, store._origin)
        change: Callable[[], Awaitable[Any]] = lambda: store._call(*args)  # noqa: E731
    else:
        change = lambda: cache.clear(user)  # noqa: E731
    while time.monotonic() < until:
        done = await change()
        if done is not FAILED and done is not False:
            if how == "delete":
                store.forget(key_of(user))
            return token, time.monotonic()
        await asyncio.sleep(0.05)
    return token, None


def report(name: str, load: Load, killed: float, promoted: float, back: float | None) -> str:
    hits = sum(s.hit for s in load.served)
    return (
        f"{name}: {len(load.served)} requests served, {len(load.errors)} errors, {hits} hits; "
        f"new master {promoted - killed:.2f} s after the kill; caching back "
        + (f"{back - promoted:.2f} s after the promotion" if back is not None else "never")
    )
