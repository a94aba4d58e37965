"""A service's token checks: cached introspection answers, one hub call per new token.

Notes
-----
Answers live on the project's cache engine (:class:`AnswerCache`, configured as
``c.AnswerCache``), so the memory, Redis and memcached backends, their sealing, fail-open
behaviour and single-flight all apply: any number of concurrent requests with one new
token make one hub call, across replicas on a shared backend too. Keys are an HMAC of
the token: with a random per-process secret in memory, and with a secret derived from
the encryption key on a shared backend, so that replicas find each other's answers.

Active answers are kept until the token's ``exp`` and at most ``cache_ttl``; inactive
ones for ``negative_ttl``. Every hit is judged by the
:class:`~jupyter_token_cache.tokens.trust.RevocationState` the event follower keeps, by
the stream position the hub answered at, so a revoked token is refused whichever
replica cached it and whenever this process started. Hub calls are bounded (``max_concurrent_checks``): a flood of
garbage tokens queues behind them instead of pinning the hub, and a caller that waits
longer than the hub call's timeout gets :class:`HubUnavailable` (a 503).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import httpx
from traitlets import Unicode, default

from ..cache import CacheEngine, CacheKey
from ..cache.answers import INACTIVE, CachedAnswers, Unavailable
from ..scopes import INTROSPECT_SCOPE
from ..tokens.trust import ENDED, USABLE, Eviction, RevocationState, principals

KIND = "answer"


class HubUnavailable(Unavailable):
    """The hub could not be asked and nothing usable is cached (the service answers 503)."""


class IntrospectionRefused(Exception):
    """The hub refused the service's own token (a misconfiguration, named in the message)."""


class AnswerCache(CacheEngine):
    """The cache engine holding a service's introspection answers (``c.AnswerCache``).

    Every setting of the token cache engine applies (backend, url, encryption_key,
    max_size, operation_timeout, ...); the longest an answer is kept is
    ``CachedHubAuth.cache_ttl``.
    """

    #: Not a setting: the event loop this engine serves, for backends bound to one.
    loop_name = Unicode("")
    _settings = (*CacheEngine._settings, "loop_name")

    @default("namespace")
    def _namespace_default(self) -> str:
        return "jupyter-token-cache-answers"

    @default("local_cache")
    def _local_cache_default(self) -> bool:
        # Local copies are kept fresh by a listener task on the checker's event loop;
        # HubAuth's synchronous API runs checks on a loop that only turns during a check,
        # so there a listener would hear of changes late. Opt in for async-only services.
        return False


class TokenChecker:
    """Answer "who is this token, and may it be used?" for one service, on one event loop."""

    def __init__(
        self,
        *,
        cache: AnswerCache,
        state: RevocationState,
        api_url: str,
        api_token: str,
        cache_ttl: float,
        negative_ttl: float,
        calls: asyncio.Semaphore,
        timeout: float,
        counts: Counter[str],
        log: logging.Logger,
        verify: Any = True,
    ) -> None:
        self.cache = cache
        self.state = state
        self.url = api_url.rstrip("/") + "/token-cache/introspect"
        self._headers = {"Authorization": f"token {api_token}"}
        self.cache_ttl = cache_ttl
        self.negative_ttl = negative_ttl
        self.counts = counts
        self.log = log
        self._http = httpx.AsyncClient(timeout=timeout, verify=verify)
        self.answers = CachedAnswers(
            cache=cache,
            kind=KIND,
            ask=self._ask_hub,
            ttl=cache_ttl,
            negative_ttl=negative_ttl,
            calls=calls,
            timeout=timeout,
            counts=counts,
            authority="the hub",
            prefix="hub",
            unavailable=HubUnavailable,
        )
        #: Keys this process has seen, with the position their answer was vouched for at, by
        #: token id and by principal (user, group, service): what an event evicts.
        self._by_token: OrderedDict[str, dict[CacheKey, tuple[int, Any]]] = OrderedDict()
        self._by_principal: OrderedDict[str, dict[CacheKey, tuple[int, Any]]] = OrderedDict()
        self._index_size = max(cache.max_size, 1000)
        self.loop = asyncio.get_running_loop()

    async def check(self, token: str) -> dict[str, Any] | None:
        """The active answer for ``token``, or None; raises :class:`HubUnavailable`."""
        await self.state.catch_up()  # after a freeze, read what the hub sent meanwhile
        revoked = False

        def accept(answer: dict[str, Any]) -> bool:
            nonlocal revoked
            if not answer.get("active"):
                return True
            verdict = self.state.verdict(answer)
            revoked = revoked or verdict == ENDED
            return verdict == USABLE

        def known() -> dict[str, Any] | None:
            if revoked:  # an event ended this very token: no need to ask the hub
                self.counts["revoked_hits"] += 1
                return dict(INACTIVE)
            return None

        answer, created = await self.answers.check(token, accept=accept, known=known)
        active = bool(answer.get("active"))
        if not created:
            self.counts["hits" if active else "negative_hits"] += 1
        elif active:
            self.counts["misses"] += 1
        elif not revoked:
            self.counts["negative_misses"] += 1
        if not active:
            return None
        self._index(self.answers.key(token), answer)
        return answer

    async def ask(self, token: str) -> tuple[dict[str, Any], float]:
        """One introspection call at the hub (bounded in number); the answer and its expiry."""
        return await self.answers.ask(token)

    async def _ask_hub(self, token: str, timeout: float) -> dict[str, Any]:
        response = await self._http.post(
            self.url, json={"token": token}, headers=self._headers, timeout=timeout
        )
        if response.status_code == 403:
            raise IntrospectionRefused(refused_message(response))
        if response.status_code != 200:
            raise HubUnavailable(f"The hub answered {response.status_code} to a token check")
        try:
            answer = response.json()
        except ValueError:
            return dict(INACTIVE)
        return answer if isinstance(answer, dict) else dict(INACTIVE)

    def _index(self, key: CacheKey, answer: dict[str, Any]) -> None:
        position = answer.get("last_event_id")
        if not isinstance(position, int):
            return
        vouched = (position, answer.get("iat"))
        token_id = answer.get("token_id")
        names = [(self._by_token, token_id)] if isinstance(token_id, str) else []
        names += [(self._by_principal, name) for name in principals(answer)]
        for index, name in names:
            keys = index.get(name)
            if keys is None:
                keys = index[name] = {}
                if len(index) > self._index_size:
                    index.popitem(last=False)
            else:
                index.move_to_end(name)
            keys[key] = vouched

    def evict_soon(self, eviction: Eviction) -> None:
        """From any thread (the follower's): run :meth:`evict` on this checker's loop."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.evict, eviction)

    def evict(self, eviction: Eviction) -> int:
        """Drop what ``eviction`` names from this process now (and from a shared backend).

        Only an optimisation and a count: the revocation state already refuses these
        answers wherever they are cached. Only answers vouched for *before* the event
        are touched, and for an ended token only answers about that very row (its
        ``iat`` against the event's ``created``): a younger answer, or one about a row
        that received the id afterwards, is about whichever token holds the id now.
        """
        if eviction.everything:
            self._by_token.clear()
            self._by_principal.clear()
            self.cache._background(self.cache.clear())
            self.counts[f"evictions:{eviction.reason}"] += 1
            return 0
        ended = self._taken(
            self._by_token,
            eviction.token_ids,
            lambda name, vouched: eviction.ends(name, vouched[1], vouched[0]),
        )
        changed = self._taken(
            self._by_principal,
            eviction.principals,
            lambda name, vouched: vouched[0] < eviction.position,
        )
        # an ended token's entry becomes a refusal (its secret can never be valid again),
        # so that asking about it again costs no hub call, here or at another replica
        expires_at = time.time() + self.negative_ttl
        for key in ended:
            self.cache._background(self.cache.set(key, dict(INACTIVE), expires_at=expires_at))
        for key in changed - ended:
            self.cache.discard(key)
        self.counts[f"evictions:{eviction.reason}"] += len(ended | changed)
        return len(ended | changed)

    @staticmethod
    def _taken(
        index: OrderedDict[str, dict[CacheKey, tuple[int, Any]]],
        names: tuple[str, ...],
        concerned: Callable[[str, tuple[int, Any]], bool],
    ) -> set[CacheKey]:
        """The keys indexed under ``names`` that ``concerned`` picks (removed from the index)."""
        found: set[CacheKey] = set()
        for name in names:
            keys = index.get(name)
            if not keys:
                continue
            for key, vouched in list(keys.items()):
                if concerned(name, vouched):
                    found.add(key)
                    del keys[key]
            if not keys:
                del index[name]
        return found

    async def close(self) -> None:
        await self._http.aclose()
        await self.cache.close()


def refused_message(response: httpx.Response) -> str:
    return (
        f"The hub refused this service's token at {response.request.url.path} (403): it needs "
        f"{INTROSPECT_SCOPE}. Add it to the service's role in c.JupyterHub.load_roles and "
        f"declare it in c.JupyterHub.custom_scopes."
    )
