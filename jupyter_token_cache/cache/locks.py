"""One creator per key: single-flight inside a process, a lease on the shared backend across them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from .store import CacheKey, Store

T = TypeVar("T")


class SingleFlight:
    """Run one coroutine per key however many callers ask at once.

    Notes
    -----
    The work runs in its own task and every caller awaits it through
    :func:`asyncio.shield`, so a caller that is cancelled (a client hanging up) neither
    cancels the work nor the other callers waiting on it. A futures table rather than a
    per-key ``asyncio.Lock`` means the followers do not queue up to re-read the cache one
    by one after the leader finishes: they all get the leader's result at once.
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[Any]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Return ``(result, led)``; ``led`` is True for the one caller that started the work."""
        task = self._flights.get(key)
        led = task is None or task.get_loop() is not asyncio.get_running_loop()
        if led:
            task = asyncio.ensure_future(work())
            self._flights[key] = task
            task.add_done_callback(partial(self._landed, key))
        return await asyncio.shield(cast("asyncio.Task[T]", task)), led

    def _landed(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: every caller may have gone away


class KeyedLocks:
    """One :class:`asyncio.Lock` per key, held only while someone holds or awaits it.

    Notes
    -----
    For work that must not overlap with other work on the same key but whose callers
    each need their own run (unlike :class:`SingleFlight`, which shares one result): a
    lock is made on first use and dropped when its last user leaves, so the table holds
    only the keys in use.
    """

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` once no other caller of ``key`` in this process runs its own."""
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                return await work()
        finally:
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:
                del self._locks[key]


async def acquire_lease(
    store: Store,
    key: CacheKey,
    token: str,
    *,
    timeout: float,
    ready: Callable[[], Awaitable[Any]],
) -> tuple[bool, Any]:
    """Take the cross-process lease for ``key``, or wait for whoever holds it.

    Returns ``(held, value)``: ``held`` when this process now holds the lease and should
    create; ``value`` when another process created the entry meanwhile (``ready`` found
    it). ``(False, None)`` means fail open: the backend had a problem with the lock, or
    ``timeout`` passed; the caller creates without the lease. Nothing waits longer than
    ``timeout``; the lease itself expires after that long, so a holder that died does
    not block anyone for good.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        taken = await store.try_lock(key, token)
        if taken is None:
            return False, None
        if taken:
            return True, None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, None
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.1)
        value = await ready()
        if value is not None:
            return False, value
