"""The replica's edge cache: the hub's token answers, kept per caller credential on the shared backend.

Notes
-----
An entry is what the hub answered one credential for one request shape (kind, service,
requested scopes, requested minimum lifetime), with the hub's event-stream position from *before* the request was
sent. A later request is served from it when both hold:

- the policy's own reuse rule says so (:func:`~jupyter_token_cache.tokens.service.may_reuse`,
  the function the hub's cache calls) — with the token's creation time known exactly
  for a fresh mint (the request was sent before it) and otherwise bounded below by
  ``expires_at - lifetime``, which can only make the rule stricter;
- the :class:`~jupyter_token_cache.tokens.trust.RevocationState` fed by the hub's
  event stream has seen every event since that position, and none of them ended the
  token (by id), changed or reset its user or one of the caller's groups, or reset
  everything. A position taken before the request is at or below the hub's own when it
  answered, so this errs only towards asking the hub again; an entry written before
  this replica's history begins (it was just started) is asked of the hub again, once.

The state forgets a revocation ``remember`` seconds after hearing of it, so an entry
is kept on the backend for at most that long after its request was sent (and never past
its token's expiry): no entry outlives the records that judge it. Everything else — a
miss, an entry the rule or the state refuses, a service this replica has no policy for
— goes to the hub's own route with the caller's credential: one hub request, in which the
hub applies every rule, records lineage and cascades as in the in-hub mode. The engine's
single flight (a lease on Redis) makes concurrent misses across replicas one request.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from traitlets import default

from ..cache import CacheKey
from ..cache.codec import Codec
from ..times import parse_iso8601
from ..tokens.models import IssuedToken
from ..tokens.policy import TokenCache
from ..tokens.service import may_reuse, required_lifetime
from ..tokens.trust import USABLE, RevocationState
from .hub import HubForwarder

#: Where the stream cut leaves a request the edge cannot answer: ask the hub, or 503.
ASK_HUB = "hub"
REFUSE = "refuse"


class EdgeCache(TokenCache):
    """The replicated service's cache of token answers (``c.EdgeCache``; ``c.TokenCache`` applies).

    It reads the same ``c.TokenCache`` settings as the hub — the policy lifetimes and
    ``minimum_lifetime`` its reuse rule needs, the backend, URL and encryption key —
    so one shared file configures both; its namespace is its own.
    """

    @default("namespace")
    def _namespace_default(self) -> str:
        return "jupyter-token-cache-serve"


class Entry(NamedTuple):
    """A cached hub answer (a JSON list on the backend, sealed there)."""

    token: str
    id: str
    expires_at: float
    #: A lower bound of when the hub made the token.
    created: float
    #: The hub's event-stream position (as this replica knew it) before the request was sent.
    position: int
    user: str
    scopes: list[str]
    service: str | None
    #: Epoch seconds the request was sent.
    checked_at: float
    #: The caller's groups when it was asked (a group's change makes the entry stale).
    groups: list[str]


class HubRefusal(Exception):
    """The hub's refusal (status and message), passed to the caller as the hub wrote it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EdgeTokens:
    """Notebook and internal tokens at the edge: served from the cache, or asked of the hub."""

    def __init__(
        self,
        *,
        cache: EdgeCache,
        state: RevocationState,
        hub: HubForwarder,
        on_stream_cut: str = ASK_HUB,
        log: logging.Logger | None = None,
    ) -> None:
        self.cache = cache
        self.state = state
        self.hub = hub
        self.on_stream_cut = on_stream_cut
        self.log = log or logging.getLogger(__name__)
        self.counts: Counter[str] = Counter()
        codec = getattr(cache.store, "codec", None) or Codec([secrets.token_bytes(32)])
        # the credential's HMAC names the entry: with the backend's names key on a shared
        # backend (replicas find each other's entries), with one of this process in memory
        self._name: Callable[[str], str] = partial(codec.name, "edge")

    async def issue(
        self, kind: str, credential: str, caller: dict[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        """The answer to ``POST /{kind}`` with ``body`` for ``credential`` (whose introspection is ``caller``)."""
        await self.state.catch_up()  # after a freeze, read what the hub sent meanwhile
        service = body.get("service") if kind == "internal" else None
        minimum = body.get("minimum_lifetime")
        lifetime = self.cache.lifetime_of(kind, service)
        if lifetime is None:  # no policy here for this service: the hub says why
            return await self._ask(kind, credential, body)
        need = required_lifetime(self.cache, lifetime, minimum)
        scopes = body.get("scopes")
        shape = " ".join(sorted(set(scopes))) if scopes is not None else "*"
        user = str(caller["username"])
        # One entry per credential and request shape, as the hub keeps one per session and
        # shape: a request naming a minimum is served from it when the token there lives
        # long enough. Otherwise it asks the hub in a single flight of its own (its key has
        # the minimum, so that the hub's refusal of one, a 422, cannot reach a concurrent
        # request without it) and the hub's answer becomes the entry, as at the hub.
        shared = CacheKey(user, kind, (self._name(credential), service or "", shape, 0))
        key = shared if minimum is None else CacheKey(user, kind, (*shared.parts[:3], minimum))
        hub_cached = False

        def accept(value: Any) -> bool:
            if not isinstance(value, list) or len(value) != len(Entry._fields):
                return False
            entry = Entry(*value)
            if not may_reuse(entry.expires_at, entry.created, need, minimum):
                return False
            judged = {"last_event_id": entry.position, "token_id": entry.id,
                      "username": entry.user, "groups": entry.groups,
                      "checked_at": entry.checked_at}  # fmt: skip
            return self.state.verdict(judged) == USABLE

        async def create() -> tuple[list[Any], float]:
            nonlocal hub_cached
            model, position, sent = await self._ask_hub(kind, credential, body)
            hub_cached = bool(model.get("cached"))
            expires_at = parse_iso8601(model["expires_at"]).timestamp()
            created = expires_at - lifetime  # the lifetime was at most the policy's
            if not hub_cached:
                created = max(created, sent)  # minted after the request was sent
            entry = Entry(model["token"], model["id"], expires_at, created, position, user,
                          list(model["scopes"]), model.get("service"), sent,
                          list(caller.get("groups") or []))  # fmt: skip
            # never past the revocation records that judge it (see the module's notes)
            ends = min(expires_at, sent + self.state.remember)
            if key != shared:
                await self.cache.set(shared, list(entry), expires_at=ends)
            return list(entry), ends

        value = None if key == shared else await self.cache.get(shared, accept=accept)
        if value is not None:
            created = False
        else:
            value, created = await self.cache.get_or_create(key, create, accept=accept)
        entry = Entry(*value)
        if not may_reuse(entry.expires_at, entry.created, need, minimum):
            # made for a concurrent request with a lower bar: ask for this one
            return await self._ask(kind, credential, body)
        self.counts["hits" if not created else "hub_reused" if hub_cached else "hub_minted"] += 1
        return IssuedToken(
            token=entry.token,
            id=entry.id,
            expires_at=entry.expires_at,
            scopes=tuple(entry.scopes),
            cached=hub_cached or not created,
            service=entry.service,
        ).model()

    async def _ask(self, kind: str, credential: str, body: dict[str, Any]) -> dict[str, Any]:
        """The hub's answer itself, not cached."""
        model, _, _ = await self._ask_hub(kind, credential, body)
        return model

    async def _ask_hub(
        self, kind: str, credential: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], int, float]:
        """The hub's token answer, the stream position before it was asked, and when."""
        if self.on_stream_cut == REFUSE and not self.state.connected:
            raise HubRefusal(503, "The hub's event stream is cut; try again shortly")
        # -1: no position yet (no stream since this replica started): judged stale, never served
        position = self.state.position if self.state.position is not None else -1
        sent = time.time()
        answer = await self.hub.call("POST", f"/{kind}", f"token {credential}", body=body)
        if answer.status != 200 or not isinstance(answer.body, dict):
            raise HubRefusal(answer.status, answer.message)
        return answer.body, position, sent

    async def forget(self, user: str | None = None) -> None:
        """Drop every entry (or ``user``'s): after an admin reset through this replica."""
        await self.cache.clear(user)

    def stats(self) -> dict[str, Any]:
        """This replica's view: its cache's counters, its hub calls, the event stream.

        ``creations`` counts entries made from a hub answer; whether the hub minted or
        reused a token for it is in ``answers`` (``hub_minted``, ``hub_reused``).
        """
        stats = self.cache.stats()
        return {
            **stats,
            "answers": dict(self.counts),
            "hub_requests": dict(self.hub.counts),
            "stream": self.state.stats(),
        }
