"""Bounded in-process store: an LRU over an OrderedDict, expiry checked on read, no timers."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from .store import CacheKey, Stamp, Store


class MemoryStore(Store):
    """Keep up to ``max_size`` entries in this process, least recently used dropped first.

    Notes
    -----
    aiocache 0.12's ``SimpleMemoryCache`` has no size bound and schedules one
    ``loop.call_later`` timer per key for its TTL; its calls also go through a
    ``wait_for`` timeout wrapper that costs ~45 µs here. This store does neither: each
    entry carries its deadline, a read past it is a miss (and drops the entry), and the
    size bound evicts the least recently used entry on insert, all O(1).

    Values are kept as the objects given, not serialised or encrypted: they never leave
    the hub process, which already holds the hub's database and secrets. Callers must
    treat them as immutable.

    Clearing uses generations like the shared stores, so ``clear(user)`` is O(1): an
    entry is visible only while the global and its user's generation match its stamp.
    Clearing everything also empties the dict, to give the memory back at once.
    """

    name = "memory"

    def __init__(self, *, max_size: int, ttl: float) -> None:
        super().__init__()
        self.max_size = max_size
        self.ttl = ttl
        # key -> (value, deadline, global generation, user generation)
        self._data: OrderedDict[CacheKey, tuple[Any, float, int, int]] = OrderedDict()
        self._generation = 0
        self._user_generations: dict[str, int] = {}

    def _stamp(self, user: str) -> tuple[int, int]:
        return self._generation, self._user_generations.get(user, 0)

    async def get(self, key: CacheKey) -> tuple[Any, Stamp]:
        entry = self._data.get(key)
        if entry is not None:
            value, deadline, generation, user_generation = entry
            if (
                deadline > time.time()
                and generation == self._generation
                and user_generation == self._user_generations.get(key.user, 0)
            ):
                self._data.move_to_end(key)
                return value, None
            del self._data[key]
        return None, self._stamp(key.user)

    async def set(
        self, key: CacheKey, value: Any, expires_at: float | None, stamp: Stamp = None
    ) -> None:
        now = time.time()
        deadline = now + self.ttl if expires_at is None else min(now + self.ttl, expires_at)
        if deadline <= now:
            return
        generation, user_generation = stamp or self._stamp(key.user)
        data = self._data
        data[key] = (value, deadline, generation, user_generation)
        data.move_to_end(key)
        while len(data) > self.max_size:
            evicted, _ = data.popitem(last=False)
            self.stats.add("evictions", evicted.kind)

    async def delete(self, key: CacheKey) -> bool:
        return self.forget(key)

    async def clear(self, user: str | None = None) -> None:
        if user is None:
            self._generation += 1
            self._data.clear()
        else:
            self.forget_user(user)

    def forget(self, key: CacheKey) -> bool:
        return self._data.pop(key, None) is not None

    def forget_user(self, user: str) -> bool:
        self._user_generations[user] = self._user_generations.get(user, 0) + 1
        return True

    def entries(self) -> int:
        return len(self._data)

    def drop(self) -> None:
        self._data.clear()
