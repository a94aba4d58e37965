"""What every cache store offers the engine, and the key they all understand."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, NamedTuple

from ..times import iso8601
from .locks import KeyedLocks, SingleFlight
from .stats import CacheStats

#: Generation snapshot taken when an entry was looked up: ``set`` stamps the entry with
#: it, so a value created across a ``clear`` is written under the old generation and
#: stays invisible. ``None`` means "read the current generations when writing".
Stamp = Any


class CacheKey(NamedTuple):
    """Everything a cached decision depends on.

    ``user`` scopes per-user clearing, ``kind`` labels statistics (``notebook``,
    ``internal``), ``parts`` carries the rest (parent session, its expiry, service,
    sorted scopes). A NamedTuple hashes in C, which keeps the memory hit path cheap.
    """

    user: str
    kind: str
    parts: tuple[Any, ...] = ()


class Store(ABC):
    """A place to keep entries: the engine's only view of a backend.

    A store never raises on a lookup or write because its backend failed; it reports a
    miss and counts an error instead (the cache is an optimisation, never an authority).
    """

    #: Short name shown in stats and metric labels.
    name: str = ""
    #: True when other processes see the same entries, so creations need a lease.
    shared: bool = False

    def __init__(self) -> None:
        self.stats = CacheStats()
        self.flights = SingleFlight()
        #: Work that must not overlap per key (``CacheEngine.exclusive``).
        self.locks = KeyedLocks()
        #: How many TokenCache instances use this store; closed when it drops to 0.
        self.users = 0
        #: The settings that built it (its key among the shared stores).
        self.settings: tuple[Any, ...] = ()
        #: Epoch seconds of the last change of ``available`` (or of the store's start).
        self.since = time.time()
        #: Why the backend last failed ("timed out", "ConnectionError: ...") and when.
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    @abstractmethod
    async def get(self, key: CacheKey) -> tuple[Any, Stamp]:
        """Return ``(value or None, stamp)``; expired or cleared entries are None."""

    @abstractmethod
    async def set(
        self, key: CacheKey, value: Any, expires_at: float | None, stamp: Stamp = None
    ) -> None:
        """Keep ``value`` until ``min(now + ttl, expires_at)``."""

    @abstractmethod
    async def delete(self, key: CacheKey) -> bool:
        """Drop one entry; True when something was dropped."""

    @abstractmethod
    async def clear(self, user: str | None = None) -> bool | None:
        """Make every entry (or one user's entries) invisible, in O(1); False if that failed."""

    def forget(self, key: CacheKey) -> bool:
        """Drop what this process holds for ``key`` at once, without waiting on a backend.

        True when that was the whole entry (nothing left to delete elsewhere).
        """
        return False

    def forget_user(self, user: str) -> bool:
        """Make ``user``'s entries invisible in this process at once; True when that is all."""
        return False

    async def announce(self, topic: str, payload: dict[str, Any]) -> bool:
        """Send ``payload`` to every process subscribed to ``topic`` on this backend.

        Only Redis has channels; elsewhere nothing is sent (False).
        """
        return False

    def entries(self) -> int | None:
        """How many entries are held, where that is cheap to know."""
        return None

    @property
    def available(self) -> bool:
        """False while the backend is considered down."""
        return True

    def health(self) -> dict[str, Any]:
        """What an operator asks first: is it up, since when, and what failed last."""
        return {
            "available": self.available,
            "since": iso8601(self.since),
            "last_error": self.last_error,
            "last_error_at": iso8601(self.last_error_at),
        }

    async def try_lock(self, key: CacheKey, token: str) -> bool | None:
        """Take the cross-process lease for ``key``: True, False (held), None (error)."""
        return True

    async def unlock(self, key: CacheKey, token: str) -> None:  # noqa: B027 - optional hook
        """Release the lease if ``token`` still holds it."""

    def drop(self) -> None:  # noqa: B027 - optional hook
        """Forget what this process holds (reconfiguration drops a store's contents)."""

    async def close(self) -> None:
        """Release connections and contents; the store is unusable afterwards."""
        self.drop()
