"""The shared store on memcached, with connections that survive cancelled calls."""

from __future__ import annotations

import asyncio
from typing import Any

from aiocache.base import BaseCache

from .shared import SharedStore

try:
    from aiomcache.pool import MemcachePool
except ImportError:  # pragma: no cover - no memcached extra
    MemcachePool = object  # type: ignore[assignment,misc]


class _CancelSafePool(MemcachePool):
    """aiomcache's pool, but a connection released by a cancelled task is closed.

    aiomcache marks a connection broken only on ``Exception``; ``CancelledError`` is a
    ``BaseException``, so a call cancelled between sending a command and reading its reply
    (our ``operation_timeout``, or a client hanging up) returns the connection with the
    reply still unread, and the next call on it reads the wrong answer
    (aio-libs/aiomcache#489). On Python 3.10 tasks cannot tell they are being cancelled
    and the upstream behaviour remains.
    """

    def release(self, conn: Any) -> None:
        task = asyncio.current_task()
        cancelling = getattr(task, "cancelling", None)
        if cancelling is not None and cancelling():
            self._in_use.discard(conn)
            self._do_close(conn)
            return
        super().release(conn)


class MemcachedStore(SharedStore):
    """Entries on memcached (see :class:`SharedStore` for the layout)."""

    def __init__(self, backend: BaseCache, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self._client = backend.client
        if type(self._client._pool) is MemcachePool:
            self._client._pool.__class__ = _CancelSafePool

    async def _multi_get(self, names: tuple[str, ...]) -> list[str | None]:
        # aiomcache directly: aiocache's wrappers cost ~10 µs on a ~100 µs hit
        values = await self._client.multi_get(*(name.encode() for name in names))
        return [None if value is None else value.decode() for value in values]
