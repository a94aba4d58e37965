"""The user's identity-provider tokens for their notebooks: refreshed once, cached, least privilege.

No Tornado here: the hub adapter reads and writes the auth state
(:class:`~.models.AuthStates`), resolves the caller and writes the answer; the rules live
here, what they work on in :mod:`.models`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from ..cache import CacheEngine, CacheKey, LeaseTimeout
from ..tokens.events import UPSTREAM_ENDED, Event, EventSink, NoEvents
from ..tokens.models import Forbidden, LifetimeUnavailable, UnknownService, shown
from ..tokens.service import MINT_SLACK, may_reuse
from . import auth_state
from .grants import Grant, GrantRefused, TokenEndpoint
from .models import (
    AuthStates,
    Entry,
    LoginRequired,
    ProviderDown,
    SessionChanged,
    UpstreamToken,
    login_again,
    no_token,
    refused,
    too_short,
    unrefreshable,
)
from .targets import Target, UpstreamTokens
from .verify import ProviderUnavailable

T = TypeVar("T")
#: The kind of the cached entries (the stats' by_kind), and of each user's refresh section.
KIND = "upstream"
SECTION = "upstream-refresh"
#: Seconds the login's token must have left to be presented for a target's token.
SUBJECT_LIFETIME = 10
#: Seconds a request waits at least, whatever it waited before (a cache hit takes less).
MIN_WAIT = 0.5


class UpstreamTokenService:
    """Hand out the user's upstream access token, or a target's, refreshing once per user.

    Notes
    -----
    - **One refresh per user.** Every use of a user's refresh token — this route's
      refresh, a target's token by resource indicator (which rotates it too), and
      JupyterHub's own ``refresh_user`` (:meth:`refresh_user`) — runs in the user's
      *section* (:meth:`CacheEngine.exclusive`: a lock in this process, the engine's
      lease across processes). A section first reads the auth state from the database,
      so the second of two callers sees the token the first one got and makes no call;
      the refresh token the provider rotated is saved before the section ends. Callers
      of one cache key share one section (the engine's single flight), so a hundred
      requests at expiry make one refresh and get one token.
    - **A refresh is never abandoned.** A caller waits ``timeout`` and then gets 503, but
      the section runs on, in its flight's own task, for up to ``grant_timeout``: a
      provider that answers late has rotated the refresh token all the same, and
      dropping that answer would leave a spent one in the auth state — whose next use
      makes a provider with reuse detection revoke the whole grant.
    - **Least privilege.** A target's token is asked for with the target's audience and
      scopes only; callers need the target's scope. Entries are keyed by user, upstream
      session, target and scopes, and sealed on shared backends like every entry.
    - **Reuse.** A cached token is handed out while it has ``minimum_lifetime`` (or the
      request's) left. A request no fresh token could meet is a 422, not a refresh per
      request: the provider's lifetime is known from the last token it gave.
    - **Ends.** ``invalid_grant`` at a refresh ends the upstream session (one event); so
      do logout, user deletion and an admin's reset with revoke (:meth:`end`). Ending
      drops every token from the auth state (the user must log in again: 401) and the
      cache, and revokes what was handed out at the provider.
    """

    def __init__(
        self,
        *,
        settings: UpstreamTokens,
        cache: CacheEngine,
        states: AuthStates,
        endpoint: TokenEndpoint,
        events: EventSink | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.states = states
        self.endpoint = endpoint
        self.counts: Counter[str] = endpoint.counts
        self.events = events or NoEvents()
        self.log = log or logging.getLogger(__name__)
        self._revoking: set[asyncio.Task[None]] = set()

    # -- handing tokens out -------------------------------------------------------------

    async def token(
        self,
        user: Any,
        scopes: frozenset[str],
        *,
        target: str | None = None,
        minimum_lifetime: int | None = None,
        waited: float = 0.0,
    ) -> UpstreamToken:
        """The user's upstream token (``target``'s, else the login's) for a caller holding ``scopes``.

        ``waited`` is how long the request has already waited for the provider (JupyterHub's
        own refresh, :meth:`refresh_user`): it counts against ``timeout``.
        """
        name = self.states.name(user)
        chosen = self._allowed(name, scopes, target)
        self.counts["requests"] += 1
        left = max(self.settings.timeout - waited, MIN_WAIT)
        try:
            issued = await asyncio.wait_for(self._token(user, name, chosen, minimum_lifetime), left)
        except asyncio.TimeoutError:
            self.counts["timeouts"] += 1
            raise ProviderDown(
                f"The identity provider did not answer within {self.settings.timeout:g} s; "
                "ask again"
            ) from None
        except LoginRequired:
            self.counts["login_required"] += 1
            raise
        self.counts["hits" if issued.cached else "misses"] += 1
        return issued

    def _allowed(self, name: str, scopes: frozenset[str], target: str | None) -> Target | None:
        """The target asked for, if the caller may have it (404 unknown, 403 not allowed)."""
        found = None
        if target is not None:
            found = self.settings.target(target)
            if found is None:
                raise UnknownService(f"No upstream target {shown(target)} is configured")
        elif not self.settings.login_token:
            raise Forbidden("Only target tokens are handed out here: name a target")
        scope = found.scope if found is not None else self.settings.scope
        if not {scope, f"{scope}!user", f"{scope}!user={name}"} & scopes:
            raise Forbidden(f"Requires {scope}")
        return found

    def need(self, asked: int | None, lifetime: float | None) -> int:
        """Seconds a handed-out token must have left: what the request asks, else
        ``minimum_lifetime`` — or half the provider's lifetime, when its tokens live less
        than that (else none could ever be handed out)."""
        if asked is not None:
            return asked
        floor = self.settings.minimum_lifetime
        return floor if lifetime is None else min(floor, int(lifetime // 2))

    async def _token(
        self, user: Any, name: str, target: Target | None, asked: int | None
    ) -> UpstreamToken:
        for attempt in range(2):
            try:
                return await self._cached(user, name, target, asked)
            except SessionChanged:  # a login or an end crossed this request: once more
                if attempt:
                    raise LoginRequired(
                        "The login changed while this was asked; ask again"
                    ) from None
        raise AssertionError("unreachable")

    async def _cached(
        self, user: Any, name: str, target: Target | None, asked: int | None
    ) -> UpstreamToken:
        session = await self._session(user, name)
        key = self.key(name, session, target)
        short: list[float] = []  # the lifetime of the entry the cache held, if too short

        def fresh(value: Any) -> bool:
            if len(value) != len(Entry._fields):  # written by another version: a miss
                return False
            entry = Entry(*value)
            if entry.expires_at is None:
                return True
            lifetime = entry.expires_at - entry.created
            need = self.need(asked, lifetime)
            if may_reuse(entry.expires_at, entry.created, need, need):
                return True
            short.append(lifetime)
            return False

        async def create() -> tuple[Entry, float | None]:
            if short and short[-1] < self.need(asked, short[-1]) + MINT_SLACK:
                raise too_short(short[-1], self.need(asked, short[-1]))
            entry = await self._obtain(user, name, session, target, asked)
            return entry, entry.expires_at

        value, created = await self.cache.get_or_create(key, create, accept=fresh)
        entry = Entry(*value)
        if not fresh(entry):  # made for a caller that asked for less
            raise LifetimeUnavailable(
                f"No upstream token with {self.need(asked, None)} s left came in time; ask again"
            )
        return UpstreamToken(
            access_token=entry.token,
            token_type=entry.token_type,
            expires_at=entry.expires_at,
            scope=entry.scope,
            target=target.name if target is not None else None,
            cached=not created,
        )

    @staticmethod
    def key(name: str, session: str, target: Target | None) -> CacheKey:
        """The cache key of a token: user, upstream session, target and its scopes."""
        if target is None:
            return CacheKey(name, KIND, (session, "", ()))
        return CacheKey(name, KIND, (session, target.name, target.scopes))

    async def _session(self, user: Any, name: str) -> str:
        """The user's upstream session; a name is given to one that has none yet."""
        session = await self.states.session(user)
        if session == auth_state.UNSTAMPED:
            return await self._section(name, partial(self._adopt, user))
        if session is None:
            raise login_again()
        return session

    async def _adopt(self, user: Any) -> str:
        state = await self.states.load(user)
        session = auth_state.session_of(state)
        if session is None or state is None:
            raise login_again()
        if session == auth_state.UNSTAMPED:  # saved before this package was installed
            state = auth_state.stamped(state, now=time.time(), new=True)
            await self.states.save(user, state)
            session = auth_state.session_of(state)
        return str(session)

    async def _obtain(
        self, user: Any, name: str, session: str, target: Target | None, asked: int | None
    ) -> Entry:
        """A token meeting the request, from the auth state or the provider (a cache miss)."""
        if target is None or target.method == "globus":
            server = target.resource_server if target is not None else None
            held = await self._held(user, name, session, asked, server)
            return Entry(
                held.access_token,
                held.token_type,
                held.expires_at,
                held.issued_at or time.time(),
                held.scope,
            )
        if target.method == "resource":
            grant = await self._section(name, partial(self._by_resource, user, session, target))
        else:
            subject = await self._held(user, name, session, SUBJECT_LIFETIME, None)
            grant = await self._ask(target, partial(self._exchange, subject, target))
        now = time.time()
        expires_at = None if grant.expires_in is None else now + grant.expires_in
        return Entry(
            grant.access_token,
            grant.token_type,
            expires_at,
            now,
            grant.scope if grant.scope is not None else " ".join(target.scopes),
        )

    def _exchange(self, subject: auth_state.Held, target: Target) -> Awaitable[Grant]:
        if target.method == "globus-dependent":
            return self.endpoint.dependent(subject.access_token, str(target.resource_server))
        return self.endpoint.exchange(
            subject.access_token,
            audience=target.audience,
            resource=target.resource,
            scopes=target.scopes,
        )

    async def _held(
        self, user: Any, name: str, session: str, asked: int | None, server: str | None
    ) -> auth_state.Held:
        """The auth state's token (the login's, or resource ``server``'s), refreshed in the
        user's section when it has less left than the request needs (:meth:`need`)."""

        async def work() -> auth_state.Held:
            state = await self._current(user, session)
            held = auth_state.held(state, server)
            if held is None:
                raise no_token(server)
            now = time.time()
            lifetime = None
            if held.expires_at is not None and held.issued_at is not None:
                lifetime = held.expires_at - held.issued_at
            need = self.need(asked, lifetime)
            if held.expires_at is None and held.refresh_token is None:
                return held  # never expires, as far as anyone knows (GitHub's OAuth apps)
            if held.expires_at is not None and held.expires_at - now >= need:
                return held  # good enough: perhaps the section before this one refreshed it
            if held.refresh_token is None:
                raise unrefreshable(held, now, need)
            if lifetime is not None and lifetime < need + MINT_SLACK:
                raise too_short(lifetime, need)
            grant = await self._refresh(user, state, held.refresh_token)
            new = auth_state.refreshed(
                state, grant.response, now=time.time(), resource_server=server
            )
            await self.states.save(user, new)
            self.counts["refreshes"] += 1
            return auth_state.held(new, server) or held

        return await self._section(name, work)

    async def _by_resource(self, user: Any, session: str, target: Target) -> Grant:
        """A target's token by resource indicator (RFC 8707): a refresh, which rotates the
        refresh token too, so it runs in the user's section and saves the new one."""
        state = await self._current(user, session)
        held = auth_state.held(state)
        if held is None or held.refresh_token is None:
            raise login_again("there is no refresh token to ask for a target's token with")
        grant = await self._refresh(user, state, held.refresh_token, target)
        new = auth_state.refreshed(state, grant.response, now=time.time(), token=False)
        await self.states.save(user, new)
        return grant

    async def _refresh(
        self, user: Any, state: dict[str, Any], token: str, target: Target | None = None
    ) -> Grant:
        """The refresh grant; ``invalid_grant`` ends the session, here in the section."""
        try:
            if target is None:
                return await self.endpoint.refresh(token)
            return await self.endpoint.refresh(
                token, resource=target.resource, scopes=target.scopes
            )
        except GrantRefused as e:
            if e.error != "invalid_grant":
                raise refused(e, target) from None
            await self._end(user, state, "invalid-grant", revoke=False)
            raise login_again("the identity provider no longer accepts this login") from None
        except ProviderUnavailable as e:
            raise ProviderDown(str(e)) from None

    async def _ask(self, target: Target, call: Callable[[], Awaitable[Grant]]) -> Grant:
        try:
            return await call()
        except GrantRefused as e:
            raise refused(e, target) from None
        except ProviderUnavailable as e:
            raise ProviderDown(str(e)) from None

    async def _current(self, user: Any, session: str) -> dict[str, Any]:
        """The auth state from the database, still of ``session``."""
        state = await self.states.load(user)
        found = auth_state.session_of(state)
        if found is None or state is None:
            raise login_again()
        if found != session:
            raise SessionChanged()
        return state

    async def _section(self, name: str, work: Callable[[], Awaitable[T]]) -> T:
        """``work`` in the user's section (see the class notes)."""
        try:
            return await self.cache.exclusive(
                CacheKey(name, SECTION), work, timeout=self.settings.grant_timeout
            )
        except LeaseTimeout:
            raise ProviderDown("Another hub process is refreshing this user's tokens") from None

    # -- JupyterHub's own refresh -------------------------------------------------------

    async def refresh_user(self, user: Any, run: Callable[[], Awaitable[Any]]) -> Any:
        """JupyterHub's ``refresh_user`` (``run``: the authenticator's own), in the user's section.

        Concurrent calls for one user share one run; the auth state it returns is stamped
        (the session's name kept, the new tokens' expiries) and saved in the section, so
        a refresh token it rotated is kept before anyone else may use one. An upstream
        session ended here stays ended: the user must log in (False). A request waits
        ``timeout`` for it at most: then the user's auth is kept as it is (True), while the
        run goes on and saves what it gets, so a slow provider never holds every request
        of the user for as long as the authenticator's own HTTP timeout.
        """
        name = self.states.name(user)

        async def work() -> Any:
            before = await self.states.load(user)
            if auth_state.ended_by(before):
                return False
            result = await run()
            if isinstance(result, dict) and isinstance(result.get("auth_state"), dict):
                state = auth_state.stamped(result["auth_state"], now=time.time(), previous=before)
                await self.states.save(user, state)
                result = {**result, "auth_state": state}
            return result

        async def once() -> Any:
            return await self._section(name, work)

        try:
            result, _ = await asyncio.wait_for(
                self.cache.run_once(CacheKey(name, SECTION), once), self.settings.timeout
            )
        except ProviderDown as e:
            self.log.warning("Not refreshing %s's auth now: %s", name, e.message)
            return True  # keep what the user has; JupyterHub asks again after auth_refresh_age
        except asyncio.TimeoutError:
            self.log.warning(
                "Refreshing %s's auth takes longer than %g s; it goes on, the request does not wait",
                name,
                self.settings.timeout,
            )
            return True
        return dict(result) if isinstance(result, dict) else result

    def stamp_login(self, state: dict[str, Any]) -> dict[str, Any]:
        """A login's auth state, given a new upstream session and its tokens' expiries."""
        return auth_state.stamped(state, now=time.time(), new=True)

    # -- ending -------------------------------------------------------------------------

    async def end(self, user: Any, reason: str, *, revoke: bool = True) -> bool:
        """End the user's upstream session here (logout, deletion, reset); True if one was live."""
        name = self.states.name(user)

        async def work() -> bool:
            return await self._end(user, await self.states.load(user), reason, revoke=revoke)

        return await self._section(name, work)

    async def _end(
        self, user: Any, state: dict[str, Any] | None, reason: str, *, revoke: bool
    ) -> bool:
        """Drop every token of ``state`` (in the section), evict, announce, revoke."""
        if state is None or not auth_state.locations(state):
            return False
        name = self.states.name(user)
        session = auth_state.session_of(state) or ""
        keys = [self.key(name, session, None)] + [
            self.key(name, session, self.settings.target(t)) for t in self.settings.targets
        ]
        handed: list[tuple[str, str]] = []
        if revoke:
            for key in keys:
                value = await self.cache.get(key)
                if value is not None and len(value) == len(Entry._fields):
                    handed.append((Entry(*value).token, "access_token"))
        await self.states.save(user, auth_state.ended(state, reason, now=time.time()))
        for key in keys:
            await self.cache.delete(key)
        self.counts["ended"] += 1
        self.events.publish([Event(UPSTREAM_ENDED, user=name, reason=reason)])
        self.log.info("The upstream session of %s ended: %s", name, reason)
        if revoke and self.settings.revoke_on_end:
            tokens = list(dict.fromkeys(handed + auth_state.revocable(state)))
            task = asyncio.get_running_loop().create_task(self._revoke(name, tokens))
            self._revoking.add(task)
            task.add_done_callback(self._revoking.discard)
        return True

    async def _revoke(self, name: str, tokens: list[tuple[str, str]]) -> None:
        """Revoke ``tokens`` at the provider (RFC 7009), best effort: they expire anyway."""
        revoked = 0
        for token, hint in tokens:
            try:
                revoked += await self.endpoint.revoke(token, hint)
            except (ProviderUnavailable, OSError, asyncio.TimeoutError) as e:
                self.log.warning("Could not revoke a token of %s at the provider: %s", name, e)
            except Exception as e:  # noqa: BLE001 - httpx's errors, whatever they are
                self.log.warning(
                    "Could not revoke a token of %s at the provider (%s)", name, type(e).__name__
                )
        if revoked:
            self.log.info("Revoked %i upstream token(s) of %s at the provider", revoked, name)

    async def close(self) -> None:
        """Let revocations under way finish (hub shutdown, tests)."""
        if self._revoking:
            await asyncio.wait(set(self._revoking), timeout=self.settings.timeout)

    def stats(self) -> dict[str, int]:
        """Requests, hits and misses, refreshes, provider calls and errors, ended sessions."""
        names = (
            "requests",
            "hits",
            "misses",
            "refreshes",
            "refresh_calls",
            "exchange_calls",
            "dependent_calls",
            "revocations",
            "provider_calls",
            "provider_errors",
            "timeouts",
            "login_required",
            "ended",
        )
        return {name: self.counts[name] for name in names}
