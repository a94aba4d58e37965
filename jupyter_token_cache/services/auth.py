"""CachedHubAuth and CachedHubOAuth: HubAuth with cached token checks and immediate revocation.

Notes
-----
They subclass JupyterHub's own classes and override one method, ``user_for_token``,
which every path of ``HubAuth`` goes through (``get_user`` for ``HubAuthenticated``
handlers, tokens in cookies for ``HubOAuth``, jupyter-server's identity provider), so
handlers, ``check_scopes``, ``c.HubAuth`` settings and OAuth keep working unchanged.
Instead of ``GET /hub/api/user`` *with the token being checked*, a miss introspects it
with the service's own token (``POST /hub/api/token-cache/introspect``), and the answer
is cached (see :mod:`.checker`) and judged against the hub's event stream (see
:mod:`jupyter_token_cache.tokens.trust` and :mod:`.follower`).

``HubAuth``'s synchronous API runs its coroutines on a background thread with a loop of
its own; a checker (and, on Redis or memcached, a connection pool) is kept per event
loop, while the revocation state and the event follower are shared by all of them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from jupyterhub.services.auth import HubAuth, HubOAuth
from tornado import web
from traitlets import Bool, CaselessStrEnum, Float, Integer
from traitlets.config import Configurable

from ..tokens.trust import KEEP, Eviction, RevocationState
from . import metrics
from .checker import AnswerCache, HubUnavailable, IntrospectionRefused, TokenChecker
from .follower import EventFollower


class CachedTokenChecks(Configurable):
    """The settings and machinery CachedHubAuth and CachedHubOAuth add to HubAuth."""

    cache_ttl = Float(
        300.0,
        config=True,
        help="""Longest (seconds) an active token's answer is cached; never past the
        token's own expiry. Revocations evict answers at once while the hub's event
        stream is followed, so this bounds only how often an unchanged token is
        re-checked.""",
    )
    negative_ttl = Float(
        5.0,
        config=True,
        help="""Seconds an inactive answer (unknown, expired or revoked token) is cached,
        so that a client repeating a bad token costs the hub one call per period.""",
    )
    on_disconnect = CaselessStrEnum(
        ["keep", "clear"],
        KEEP,
        config=True,
        help="""What to do while the hub's event stream is cut (hub restart, network).
        "keep": serve answers cached before the cut for at most `disconnected_ttl`
        seconds; missed events are replayed on reconnect. "clear": trust nothing
        cached; every request asks the hub until the stream is back (PingGateway's
        CLEAR_ON_DISCONNECT).""",
    )
    disconnected_ttl = Float(
        30.0,
        config=True,
        help="""With on_disconnect = "keep", seconds after the stream is cut (or after an
        answer was checked, if later) that a cached answer is still served.""",
    )
    max_concurrent_checks = Integer(
        10,
        config=True,
        help="""Most introspection calls to the hub in flight at once from one event loop.
        Requests beyond wait their turn (up to `check_timeout`), so a flood of new or
        garbage tokens cannot pin the hub.""",
    )
    check_timeout = Float(
        10.0,
        config=True,
        help="""Seconds a token check may wait for and take at the hub. Past it, with
        nothing usable cached, the request is answered 503.""",
    )
    follow_events = Bool(
        True,
        config=True,
        help="""Follow the hub's token event stream (needs custom:token-cache:events) to
        drop revoked tokens at once. Without it, answers are trusted for
        `disconnected_ttl` at most, as during a cut.""",
    )
    stream_timeout = Float(
        15.0,
        config=True,
        help="""Seconds of silence after which the event stream is considered cut. The hub
        sends a heartbeat every c.TokenCache.event_heartbeat seconds (5 by default):
        keep this a few heartbeats long.""",
    )

    # -- wiring ---------------------------------------------------------------------------

    _token_checkers: dict[asyncio.AbstractEventLoop, TokenChecker]
    _token_counts: Counter[str]
    _revocations: RevocationState
    _follower: EventFollower | None

    def _machinery(self) -> None:
        if getattr(self, "_token_checkers", None) is not None:
            return
        self._token_checkers = {}
        self._token_counts = Counter()
        self._revocations = RevocationState(
            on_disconnect=self.on_disconnect,
            disconnected_ttl=self.disconnected_ttl,
            remember=max(self.cache_ttl, self.disconnected_ttl),
            follows=self.follow_events,
        )
        self._follower = None
        metrics.track(self)
        if not self.follow_events and self.on_disconnect == "clear":
            self.log.warning(  # type: ignore[attr-defined]
                "CachedHubAuth: follow_events is off and on_disconnect is 'clear': "
                "nothing cached is ever used, every request asks the hub"
            )
        if self.follow_events:
            self._follower = EventFollower(
                api_url=self.api_url,  # type: ignore[attr-defined]
                api_token=self.api_token,  # type: ignore[attr-defined]
                state=self._revocations,
                evict=self._evict,
                idle_timeout=self.stream_timeout,
                log=self.log,  # type: ignore[attr-defined]
                verify=tls_verify(self),
            )

    def _evict(self, eviction: Eviction) -> None:
        for checker in list(self._token_checkers.values()):
            checker.evict_soon(eviction)

    @property
    def revocations(self) -> RevocationState:
        """What this process has heard of the hub's revocations (shared by every checker)."""
        self._machinery()
        return self._revocations

    def token_checker(self) -> TokenChecker:
        """The checker of the running event loop (made, and the follower started, on first use)."""
        self._machinery()
        loop = asyncio.get_running_loop()
        checker = self._token_checkers.get(loop)
        if checker is None:
            # connections (Redis, memcached) and single flights belong to one loop
            cache = AnswerCache(parent=self, ttl=self.cache_ttl, loop_name=str(id(loop)))
            checker = self._token_checkers[loop] = TokenChecker(
                cache=cache,
                state=self._revocations,
                api_url=self.api_url,  # type: ignore[attr-defined]
                api_token=self.api_token,  # type: ignore[attr-defined]
                cache_ttl=self.cache_ttl,
                negative_ttl=self.negative_ttl,
                calls=asyncio.Semaphore(self.max_concurrent_checks),
                timeout=self.check_timeout,
                counts=self._token_counts,
                log=self.log,  # type: ignore[attr-defined]
                verify=tls_verify(self),
            )
        if self._follower is not None:
            self._follower.start()
        return checker

    async def start(self, timeout: float = 10.0) -> None:
        """Check the service's scopes and connect to the event stream; raise on a misconfiguration.

        Call it once at start-up (``await auth.start()``): a missing scope is then a
        clear error naming it, instead of 503s on the first requests.
        """
        checker = self.token_checker()
        try:
            await checker.check("")
        except IntrospectionRefused as e:
            raise RuntimeError(str(e)) from None
        follower = self._follower
        if follower is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, follower.first_attempt.wait, timeout
            )
            if follower.refused:
                raise RuntimeError(follower.error)

    def token_check_stats(self) -> dict[str, Any]:
        """Counters and the event stream's state, for a service's own status page."""
        self._machinery()
        stream = self._revocations.stats()
        if self._follower is not None:
            stream["connects"] = self._follower.connects
        return {**self._token_counts, "stream": stream}

    def close_token_checks(self) -> None:
        """Stop following events (the checkers close with their loops)."""
        if getattr(self, "_follower", None) is not None:
            self._follower.close()  # type: ignore[union-attr]

    # -- HubAuth ----------------------------------------------------------------------------

    def get_user(self, handler: Any, *, sync: bool = True) -> Any:
        """``HubAuth.get_user``; a handler whose caller was already identified (by
        :class:`~.authenticated.CachedHubAuthenticated`'s ``prepare``) gets that answer
        at once, without a trip through ``HubAuth``'s background thread, which may be
        busy with another request's hub call."""
        if sync and hasattr(handler, "_cached_hub_user"):  # where HubAuth remembers it
            return handler._cached_hub_user
        return super().get_user(handler, sync=sync)  # type: ignore[misc]

    def user_for_token(
        self, token: str, use_cache: bool = True, session_id: str = "", *, sync: bool = True
    ) -> Any:
        """The hub's model of ``token``'s owner (or None), from the cache when it may be used."""
        return self._call_coroutine(sync, self._cached_user_for_token, token, use_cache)  # type: ignore[attr-defined]

    async def _cached_user_for_token(self, token: str, use_cache: bool) -> dict[str, Any] | None:
        checker = self.token_checker()
        try:
            if use_cache:
                answer = await checker.check(token)
            else:
                answer, _ = await checker.ask(token)
                answer = answer if answer.get("active") else None
        except HubUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        except IntrospectionRefused as e:
            self.log.error("%s", e)  # type: ignore[attr-defined]
            raise web.HTTPError(503, "This service cannot check tokens (see its log)") from None
        return None if answer is None else user_model(answer)


class CachedHubAuth(CachedTokenChecks, HubAuth):  # type: ignore[misc]  # jupyterhub is untyped
    """JupyterHub's ``HubAuth`` with cached, revocation-aware token checks."""


class CachedHubOAuth(CachedTokenChecks, HubOAuth):  # type: ignore[misc]  # jupyterhub is untyped
    """JupyterHub's ``HubOAuth`` with cached, revocation-aware token checks."""


def user_model(answer: dict[str, Any]) -> dict[str, Any]:
    """The model ``HubAuth`` hands to handlers, from an introspection answer (a new dict)."""
    return {
        "kind": answer.get("owner_kind", "user"),
        "name": answer["username"],
        "admin": bool(answer.get("admin", False)),
        "groups": list(answer.get("groups", [])),
        "scopes": list(answer.get("scopes", [])),
        "session_id": answer.get("session_id"),
        "token_id": answer.get("token_id"),
    }


def tls_verify(auth: Any) -> Any:
    """TLS settings for httpx from HubAuth's (internal_ssl deployments)."""
    if getattr(auth, "certfile", "") or getattr(auth, "client_ca", ""):
        from jupyterhub.utils import make_ssl_context

        return make_ssl_context(auth.keyfile, auth.certfile, cafile=auth.client_ca)
    return True
