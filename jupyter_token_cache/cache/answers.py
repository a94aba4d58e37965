"""Cached answers about credentials from an authority that must be asked (RFC 7662's rule).

Notes
-----
Two parts of this project ask someone else whether a bearer token is good: a service asks
the hub (:mod:`jupyter_token_cache.services.checker`), and the hub asks the site's
identity provider before a token exchange (:mod:`jupyter_token_cache.upstream`). Both
follow one rule, kept here:

- answers live on a :class:`~.engine.CacheEngine`, keyed by an HMAC of the token (never
  the token), so memory, Redis and memcached, their sealing and single flight apply: any
  number of concurrent requests with one new token make one call to the authority;
- an active answer is kept until the token's ``exp`` and at most ``ttl``; an inactive
  one for ``negative_ttl``, so a client repeating a bad token costs one call a period;
- calls to the authority are bounded (a semaphore), and the wait for a slot and the call
  share one deadline: past it the caller gets :class:`Unavailable` and nothing is cached,
  so the next request asks again and the cache recovers by itself.

What to do when the authority cannot be asked is the caller's decision (a service
answers 503; the exchange fails closed, as an unverifiable credential must).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import httpx

from .codec import Codec
from .engine import Acceptor, CacheEngine
from .store import CacheKey

INACTIVE: dict[str, Any] = {"active": False}
#: Added to an active answer when it is received (epoch seconds): this cache's, not the authority's.
CHECKED_AT = "checked_at"

#: Asks the authority about a token within the seconds given; returns its answer.
Ask = Callable[[str, float], Awaitable[dict[str, Any]]]


def as_answered(answer: dict[str, Any]) -> dict[str, Any]:
    """``answer`` as the authority gave it, without this cache's bookkeeping (a new dict)."""
    return {name: value for name, value in answer.items() if name != CHECKED_AT}


class Unavailable(Exception):
    """The authority could not be asked in time and nothing usable is cached."""


class CachedAnswers:
    """Answers of one authority about bearer tokens, cached and asked for once per token.

    ``ask(token, seconds)`` calls the authority; an answer whose ``active`` is not True
    is stored as :data:`INACTIVE`. ``counts`` gets ``<prefix>_calls``, ``_busy`` and
    ``_errors``; ``authority`` names it in :class:`Unavailable` messages.
    """

    def __init__(
        self,
        *,
        cache: CacheEngine,
        kind: str,
        ask: Ask,
        ttl: float,
        negative_ttl: float,
        calls: asyncio.Semaphore,
        timeout: float,
        counts: Counter[str],
        authority: str,
        prefix: str,
        unavailable: type[Unavailable] = Unavailable,
    ) -> None:
        self.cache = cache
        self.kind = kind
        self._ask = ask
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._calls = calls
        self._timeout = timeout
        self.counts = counts
        self.authority = authority
        self.prefix = prefix
        self._unavailable = unavailable
        # HMAC of a token, the cache key's only part: on a shared backend with the names'
        # key (replicas find each other's answers), in memory with a key of this process
        codec = getattr(cache.store, "codec", None) or Codec([secrets.token_bytes(32)])
        self.name: Callable[[str], str] = partial(codec.name, kind)

    def key(self, token: str) -> CacheKey:
        return CacheKey("", self.kind, (self.name(token),))

    async def check(
        self,
        token: str,
        *,
        accept: Acceptor | None = None,
        known: Callable[[], dict[str, Any] | None] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """``(answer, asked)``: the cached answer about ``token``, or the authority's now.

        ``accept`` may refuse a cached answer (then the authority is asked again);
        ``known()``, when it returns an answer, is cached instead of asking.
        """

        async def create() -> tuple[Any, float | None]:
            answer = known() if known is not None else None
            if answer is not None:
                return answer, self.expiry(answer)
            return await self.ask(token)

        answer, created = await self.cache.get_or_create(self.key(token), create, accept=accept)
        return answer, created

    async def ask(self, token: str) -> tuple[dict[str, Any], float]:
        """One bounded call to the authority; the answer and how long it may be kept."""
        deadline = time.monotonic() + self._timeout  # the wait and the call, together
        try:
            await asyncio.wait_for(self._calls.acquire(), self._timeout)
        except asyncio.TimeoutError:
            self.counts[f"{self.prefix}_busy"] += 1
            raise self._unavailable(
                f"Too many token checks waiting on {self.authority}; try again"
            ) from None
        try:
            self.counts[f"{self.prefix}_calls"] += 1
            left = max(deadline - time.monotonic(), 0.001)
            answer = await asyncio.wait_for(self._ask(token, left), left)
        # RecursionError: an answer nested deeper than the JSON parser goes
        except (httpx.HTTPError, asyncio.TimeoutError, RecursionError) as e:
            self.counts[f"{self.prefix}_errors"] += 1
            raise self._unavailable(
                f"{self.authority[:1].upper()}{self.authority[1:]} is unreachable "
                f"({type(e).__name__})"
            ) from None
        except Unavailable:
            self.counts[f"{self.prefix}_errors"] += 1
            raise
        finally:
            self._calls.release()
        if not isinstance(answer, dict) or answer.get("active") is not True:
            answer = dict(INACTIVE)
        else:
            answer[CHECKED_AT] = time.time()
        return answer, self.expiry(answer)

    def expiry(self, answer: dict[str, Any]) -> float:
        """When a cached answer ends: the token's ``exp`` and ``ttl`` for an active one."""
        now = time.time()
        if answer.get("active") is not True:
            return now + self.negative_ttl
        expires_at = now + self.ttl
        if isinstance(answer.get("exp"), (int, float)):
            expires_at = min(expires_at, float(answer["exp"]))
        return expires_at
