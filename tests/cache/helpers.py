"""Small helpers the cache tests share."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyter_token_cache.cache import CacheKey


def key(user: str = "alice", kind: str = "notebook", *parts: str) -> CacheKey:
    return CacheKey(user, kind, parts or ("session-1",))


class Creator:
    """A creator that counts its calls and can be slowed down."""

    def __init__(self, lifetime: float = 3600, delay: float = 0.0, value: Any = None) -> None:
        self.calls = 0
        self.lifetime = lifetime
        self.delay = delay
        self.value = value

    async def __call__(self) -> tuple[Any, float]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        value = self.value if self.value is not None else {"token": f"secret-{self.calls}"}
        return value, time.time() + self.lifetime
