"""Stores on a shared server (Redis, memcached, any aiocache backend): sealed, fail-open, O(1) clears."""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, cast

from aiocache.base import BaseCache

from .codec import Codec
from .deadlines import Deadlines
from .store import CacheKey, Stamp, Store

#: Returned by a guarded backend call that failed, timed out or was skipped.
FAILED: Any = object()
#: Most lock names whose leases this process remembers having stranded (see try_lock).
_MAX_STRANDED = 10_000


class SharedStore(Store):
    """Entries on a server that several hub processes (or hubs) may share.

    Layout under ``namespace``::

        {ns}:g              global generation (a random nonce)
        {ns}:u:{hmac(user)} one user's generation
        {ns}:e:{hmac(key)}  "{global}:{user}|{fernet(json)}"
        {ns}:l:{hmac(key)}  lease lock while one process creates the entry

    Notes
    -----
    *Generations are stamped into values, not folded into key names.* Folding them into
    names would need the generations before the entry could even be named: two round
    trips per hit. Stamping lets one round trip fetch the entry and both generations
    (``MGET``, or a Lua script on Redis), and an entry whose stamp differs from the
    current generations is a miss: bumping a generation hides every entry under it, in
    O(1), with no ``KEYS``, ``FLUSHDB`` or ``flush_all`` (aiocache's ``clear()`` uses those
    and would wipe other applications' data on a shared server).

    Generations are random nonces rather than counters: if the server evicts or loses a
    generation key, a fresh nonce replaces it and everything stamped before is a miss;
    a counter restarting at 0 could revive entries that were cleared.

    *Fail open.* Every backend call is bounded by ``operation_timeout``; a failure or
    timeout is a miss (or a skipped write), counted, and logged once per outage. After a
    failure the backend is left alone for ``retry_interval`` so that a dead or frozen
    server costs one timeout per request at most, not one per call.
    """

    shared = True

    def __init__(
        self,
        backend: BaseCache,
        *,
        codec: Codec,
        namespace: str,
        ttl: float,
        operation_timeout: float,
        retry_interval: float,
        lease_ttl: float,
        opened_size: int,
        connections: int,
        log: logging.Logger,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.name = getattr(backend, "NAME", type(backend).__name__)
        self.codec = codec
        self.ttl = ttl
        self.operation_timeout = operation_timeout
        self.retry_interval = retry_interval
        self.lease_ttl = lease_ttl
        self.log = log
        self._ns = namespace
        self._global_name = f"{namespace}:g"
        self._nonces = (f"{secrets.token_hex(6)}{n:x}" for n in itertools.count())
        self._skip_until = 0.0
        self._outage = False
        self._slots = asyncio.Semaphore(connections)
        self._deadlines = Deadlines(operation_timeout)
        #: Leases this process may have left on the backend, by lock name (see try_lock).
        self._stranded: dict[str, list[str]] = {}
        # entry text -> (key name, expires_at, value); see _open
        self._opened: OrderedDict[str, tuple[str | None, float | None, Any]] = OrderedDict()
        self._opened_size = opened_size
        #: (entry name, expires_at, stamp) of the entry the last hit opened
        self._last_opened: tuple[str | None, float | None, str] | None = None
        # Deriving a name costs an HMAC (~1.5 µs); hot keys are named once.
        self._entry_name = lru_cache(maxsize=65536)(self._entry_name_uncached)
        self._user_name = lru_cache(maxsize=65536)(self._user_name_uncached)

    # -- names --------------------------------------------------------------------------

    def _entry_name_uncached(self, key: CacheKey) -> str:
        return f"{self._ns}:e:{self.codec.name(*key)}"

    def _user_name_uncached(self, user: str) -> str:
        return f"{self._ns}:u:{self.codec.name('user', user)}"

    def _lock_name(self, key: CacheKey) -> str:
        return f"{self._ns}:l:{self.codec.name(*key)}"

    # -- the guard ----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return not self._outage

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Run one backend call under the time limit; FAILED instead of any exception.

        The semaphore queues a burst larger than the connection pool (redis-py 8's pool
        raises "Too many connections" instead of waiting; its blocking pool costs ~50 µs a
        call); waiting for it counts against the limit. This is the hot path of every
        shared-backend hit, hence one flat coroutine.
        """
        if self._skip_until and time.monotonic() < self._skip_until:
            return FAILED
        task = self._deadlines.start()
        try:
            async with self._slots:
                result = await fn(*args, **kwargs)
        except asyncio.CancelledError:
            # ours (the deadline) unless someone else cancelled too: theirs must go through
            if not self._deadlines.finish(task) or getattr(task, "cancelling", int)():
                raise
            self._failed(TimeoutError())
            return FAILED
        except Exception as exc:  # noqa: BLE001 - the cache must never fail a request
            self._deadlines.finish(task)
            self._failed(exc)
            return FAILED
        self._deadlines.finish(task)
        if self._outage:
            self._outage = False
            self._skip_until = 0.0
            self.since = time.time()
            self.log.warning("Token cache backend %s is reachable again", self.name)
        return result

    def _failed(self, exc: Exception) -> None:
        self.stats.add("errors")
        self._skip_until = time.monotonic() + self.retry_interval
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        self.last_error, self.last_error_at = reason[:200], time.time()
        if not self._outage:
            self._outage = True
            self.since = self.last_error_at
            self.log.warning(
                "Token cache backend %s unavailable (%s); serving misses until it is back",
                self.name,
                reason,
            )

    # -- entries ------------------------------------------------------------------------

    async def _fetch(self, key: CacheKey) -> tuple[str | None, str | None]:
        """Return the entry if its stamp is current, else ``(None, current stamp)``."""
        names = (self._entry_name(key), self._global_name, self._user_name(key.user))
        raw, generation, user_generation = await self._multi_get(names)
        if generation is None or user_generation is None:
            for name, value in zip(names[1:], (generation, user_generation), strict=True):
                if value is None:
                    await self._add(name, next(self._nonces), None)
            raw, generation, user_generation = await self._multi_get(names)
        stamp = f"{generation}:{user_generation}"
        if raw is not None and raw.startswith(stamp + "|"):
            return raw, stamp
        return None, stamp

    async def _multi_get(self, names: tuple[str, ...]) -> list[str | None]:
        return cast("list[str | None]", await self.backend.multi_get(list(names)))

    async def get(self, key: CacheKey) -> tuple[Any, Stamp]:
        fetched = await self._call(self._fetch, key)
        if fetched is FAILED:
            return None, None
        raw, stamp = fetched
        if raw is None:
            return None, stamp
        opened = self._opened.get(raw) or self._open(raw)
        name, expires_at, value = opened
        if name != self._entry_name(key) or (expires_at is not None and expires_at <= time.time()):
            return None, raw.partition("|")[0]
        self._last_opened = (name, expires_at, stamp)
        return value, None

    def _open(self, raw: str) -> tuple[str | None, float | None, Any]:
        """Decrypt and check an entry; remember it if it is sound.

        Opening a Fernet envelope costs 10-40 µs (more with cold CPU caches under load):
        a third of a Redis hit. An identical entry opens to an identical payload, so
        entries already opened are remembered by their exact text. Freshness still comes
        from the server on every lookup: only what it returns now is ever used.
        """
        stamp, _, sealed = raw.partition("|")
        payload = self.codec.open(sealed)
        if payload is None or payload.get("s") != stamp:
            return None, None, None
        opened = (payload.get("k"), payload.get("x"), payload.get("v"))
        self._opened[raw] = opened
        if len(self._opened) > self._opened_size:
            self._opened.popitem(last=False)
        return opened

    async def set(
        self, key: CacheKey, value: Any, expires_at: float | None, stamp: Stamp = None
    ) -> None:
        now = time.time()
        seconds = self.ttl if expires_at is None else min(self.ttl, expires_at - now)
        ttl = self._ttl(seconds)
        if ttl is None:
            return
        if stamp is None:
            fetched = await self._call(self._fetch, key)
            if fetched is FAILED:
                return
            raw, stamp = fetched
            stamp = stamp or raw.partition("|")[0]  # a current entry carries the stamp
        name = self._entry_name(key)
        sealed = self.codec.seal({"k": name, "s": stamp, "x": expires_at, "v": value})
        await self._call(self._write, name, f"{stamp}|{sealed}", ttl)

    async def _write(self, name: str, text: str, ttl: Any) -> None:
        await self.backend.set(name, text, ttl=ttl)

    def _ttl(self, seconds: float) -> Any:
        """The backend's TTL for ``seconds``, never longer; None when too short to store.

        memcached (and so the generic path) takes whole seconds, where 0 means "forever"
        and more than 30 days means an absolute Unix time.
        """
        whole = int(seconds)
        if whole < 1:
            return None
        return whole if whole <= 30 * 24 * 3600 else int(time.time()) + whole

    async def delete(self, key: CacheKey) -> bool:
        deleted = await self._call(self.backend.delete, self._entry_name(key))
        return deleted not in (FAILED, 0, None, False)

    async def clear(self, user: str | None = None) -> bool:
        name = self._global_name if user is None else self._user_name(user)
        return await self._call(self.backend.set, name, next(self._nonces)) is not FAILED

    # -- leases -------------------------------------------------------------------------

    async def _add(self, name: str, value: str, ttl: Any) -> bool:
        try:
            await self.backend.add(name, value, ttl=ttl)
        except ValueError:  # aiocache's way of saying "already there"
            return False
        return True

    async def try_lock(self, key: CacheKey, token: str) -> bool | None:
        """Take the lease of ``key``; None (fail open) when the backend cannot say.

        A lock or release call that fails may still have landed (the reply was lost, or
        came after the time limit), leaving a lease of this process's on the backend that
        nobody will release: every caller of the key, here and elsewhere, would wait out
        ``lease_ttl`` behind a creator that has long finished. Such leases are remembered
        and released before this process next locks the key: its single flight means no
        creation of the key is still running here by then.
        """
        name = self._lock_name(key)
        for stranded in self._stranded.pop(name, ()):
            if await self._call(self._release, name, stranded) is FAILED:
                self._strand(name, stranded)
        if name in self._stranded:  # still failing: fail open, as any backend error does
            return None
        taken = await self._call(self._add, name, token, self._ttl(self.lease_ttl))
        if taken is FAILED:
            self._strand(name, token)
            return None
        return bool(taken)

    def _strand(self, name: str, token: str) -> None:
        self._stranded.setdefault(name, []).append(token)
        if len(self._stranded) > _MAX_STRANDED:  # a long outage: the leases expire anyway
            del self._stranded[next(iter(self._stranded))]

    async def _release(self, name: str, token: str) -> None:
        # memcached has no compare-and-delete; the lease's own expiry bounds the race.
        if await self.backend.get(name) == token:
            await self.backend.delete(name)

    async def unlock(self, key: CacheKey, token: str) -> None:
        name = self._lock_name(key)
        if await self._call(self._release, name, token) is FAILED:
            self._strand(name, token)

    def drop(self) -> None:
        self._opened.clear()

    async def close(self) -> None:
        await super().close()
        try:
            await self.backend.close()
        except Exception:  # noqa: BLE001, S110 - closing a dead connection is not an error
            pass
