"""The token rules: which token to hand out, when to reuse one, what to revoke."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from ..cache import CacheKey
from .events import CACHE_RESET, MINTED, Event, EventSink, NoEvents
from .lineage import Lineage
from .minter import MintedRow, Minter
from .models import (
    Forbidden,
    InvalidRequest,
    IssuedToken,
    LifetimeUnavailable,
    ParentSession,
    SessionEnded,
    TokenRef,
    UnknownService,
    shown,
)
from .policy import TokenCache


class CachedToken(NamedTuple):
    """What the cache holds for a token: a tuple in memory, a JSON list on a shared backend.

    Its scopes are not repeated here: they are part of the key. ``fp`` names the very
    row (see :class:`TokenRef`), so a reuse is served only while that row exists.
    """

    token: str
    id: str
    expires_at: float
    created: float
    fp: str

    @property
    def ref(self) -> TokenRef:
        return TokenRef(self.id, self.fp)


#: Seconds a fresh token may spend between its mint and its answer: a request whose
#: minimum lifetime a fresh token could only just meet is refused, not answered short.
MINT_SLACK = 1.0


@lru_cache(maxsize=4096)
def _sorted(scopes: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(scopes))


def required_lifetime(settings: TokenCache, lifetime: int, minimum_lifetime: int | None) -> int:
    """Seconds a served token must have left, for a policy ``lifetime`` and a request's minimum.

    Without a requested minimum, a policy lifetime shorter than ``minimum_lifetime``
    lowers the bar to half of it: otherwise no token of that policy could be reused.
    """
    if minimum_lifetime is None:
        return min(settings.minimum_lifetime, lifetime // 2)
    return minimum_lifetime


def keyed_expiry(session_kind: str, expires_at: float | None) -> float | None:
    """The parent expiry a token's cache key holds: the session's, or None for an upstream one.

    Notes
    -----
    A login cookie, a server's token and an API token end when they end: their expiry
    names them as surely as their reference, so it is part of the key (a parent reissued
    with another expiry is another parent). An upstream session (``sid``) is not a token:
    each token of that login the provider hands out (the first, each refresh) expires
    later than the last, and with the expiry in the key each got a hub token of its own,
    although docs/exchange.md says they share one. So an upstream session's key leaves
    the expiry out, and the rule that a child never outlives its parent moves into reuse
    (:meth:`TokenService._issue`): a cached token is handed out only if it ends no later
    than the token presented — minted for that token or an earlier one of the login, it
    does; minted for a later one, the earlier token gets a token of its own, capped by its
    own expiry, which then serves the later tokens in turn.
    """
    return None if session_kind == "upstream" else expires_at


def may_reuse(
    expires_at: float,
    created: float,
    need: int,
    minimum_lifetime: int | None,
    now: float | None = None,
) -> bool:
    """Whether a token made at ``created`` and ending at ``expires_at`` may be handed out again.

    The reuse rule of both adapters (the hub's cache and the replicated service's edge
    cache call it; neither has a copy): more than half its lifetime and at least
    ``need`` seconds left — or, when the request names a minimum, at least that much.
    A caller that only knows a lower bound of ``created`` gets a stricter answer, never
    a looser one.
    """
    remaining = expires_at - (time.time() if now is None else now)
    if minimum_lifetime is not None:
        return remaining >= minimum_lifetime
    return remaining > (expires_at - created) / 2 and remaining >= need


class TokenService:
    """Notebook and internal tokens for parent sessions, minted once and reused.

    Notes
    -----
    These are Gafaelfawr's token-cache rules applied to JupyterHub's own tokens:

    - A child never outlives its parent: ``expires = min(now + lifetime, parent expiry)``
      (and the hub's ``token_expires_in_max_seconds``, when set).
    - A cached token is reused only while it still exists in the hub, and more than half
      its lifetime remains — or, when the caller names a minimum lifetime, at least that
      much. A minimum that even a fresh token could not meet is refused (422) rather than
      answered by minting tokens that are already too short.
    - The cache key holds everything the answer depends on: user, parent session and its
      expiry, kind, service and the sorted scopes, so a token cached for one scope set
      never answers a request for another. An upstream session's tokens expire one after
      another, so its key leaves the expiry out and reuse checks it (:func:`keyed_expiry`).
    - Scopes are explicit and never wider than the parent's: notebook scopes and service
      policies are intersected with what the session holds; named scopes outside either
      are refused, naming them.

    The hub database is the authority: the cache only remembers which token to hand
    out again, and every reuse first checks that the very row it minted is still there
    (its id *and* fingerprint: ids are reused), so a token deleted through the hub's
    API, by logging out or with its user is never served.

    A minted credential, or a server's, is only as good as its session: each use
    checks that the session it was minted for still lives, and a mint for a session
    that ends meanwhile fails rather than leaves a token behind. A dead session's
    tokens are revoked (403), so orphans cannot renew themselves.
    """

    def __init__(
        self,
        *,
        settings: TokenCache,
        minter: Minter,
        events: EventSink | None = None,
        max_lifetime: int = 0,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.minter = minter
        self.events = events or NoEvents()
        self.max_lifetime = max_lifetime
        self.log = log or logging.getLogger(__name__)

    # -- asking for tokens ------------------------------------------------------------

    async def notebook_token(
        self, session: ParentSession, *, minimum_lifetime: int | None = None
    ) -> IssuedToken:
        """Return the session's notebook token, minting one only when the cached one can't be reused."""
        if session.minted == "internal":
            raise Forbidden("An internal token cannot be used to get a notebook token")
        await self._check_session(session)
        wanted = self.minter.expand(self.settings.notebook_scopes, session.user)
        scopes = self.minter.intersect(wanted, session.scopes)
        if not scopes:
            raise Forbidden("The requesting credential holds none of the notebook token scopes")
        return await self._issue(
            session,
            kind="notebook",
            service=None,
            scopes=scopes,
            lifetime=self.settings.notebook_lifetime,
            minimum_lifetime=minimum_lifetime,
        )

    async def internal_token(
        self,
        session: ParentSession,
        service: str,
        scopes: Iterable[str] | None = None,
        *,
        minimum_lifetime: int | None = None,
    ) -> IssuedToken:
        """Return a token for ``service`` with ``scopes`` (default: all the policy allows and the caller holds)."""
        policy = self.settings.services.get(service)
        if policy is None:
            raise UnknownService(f"No internal tokens are configured for service {shown(service)}")
        await self._check_session(session)
        allowed = self.minter.expand(policy["scopes"], session.user)
        if scopes is None:
            granted = self.minter.intersect(allowed, session.scopes)
            if not granted:
                raise Forbidden(
                    f"The requesting credential holds none of the scopes of service {shown(service)}"
                )
        else:
            expanded: dict[str, frozenset[str]] = {}
            for i, scope in enumerate(scopes):
                try:
                    expanded[scope] = self.minter.expand([scope], session.user)
                except InvalidRequest:
                    raise InvalidRequest(
                        f"scopes[{i}] is not a known scope: {shown(scope)}"
                    ) from None
            requested = sorted(expanded)
            outside = [s for s in requested if not self._within(expanded[s], allowed)]
            if outside:
                raise Forbidden(
                    f"Scopes not allowed for service {shown(service)}: {', '.join(map(shown, outside))}"
                )
            not_held = [s for s in requested if not self._within(expanded[s], session.scopes)]
            if not_held:
                raise Forbidden(
                    f"Scopes not held by the requesting credential: {', '.join(map(shown, not_held))}"
                )
            granted = self.minter.expand(requested, session.user)
        return await self._issue(
            session,
            kind="internal",
            service=service,
            scopes=granted,
            lifetime=policy["lifetime"],
            minimum_lifetime=minimum_lifetime,
        )

    def server_scopes(self, user: str, token_scopes: frozenset[str]) -> frozenset[str]:
        """What a spawned server's session may grant (see ``server_session_scopes``).

        By default a server's token is worth what the hub gave the server plus what
        ``notebook_scopes`` gives its notebook token, both within the user's scopes:
        whoever can run code in a server (it may be shared) gets no more through this
        extension than the hub already put in the server.
        """
        held = self.minter.user_scopes(user)
        if self.settings.server_session_scopes == "user":
            return held
        notebook = self.minter.intersect(
            self.minter.expand(self.settings.notebook_scopes, user), held
        )
        return frozenset(token_scopes | notebook)

    def _within(self, expanded: frozenset[str], allowed: frozenset[str]) -> bool:
        return self.minter.intersect(expanded, allowed) == expanded

    async def check_session(self, session: ParentSession) -> None:
        """Refuse (403) a credential whose session has ended, as a token request would
        (for the routes that hand out something else: upstream tokens)."""
        await self._check_session(session)

    async def _check_session(self, session: ParentSession) -> None:
        """Refuse (403) a credential whose session has ended, and revoke what it left."""
        if session.minted is None and session.kind != "server":
            return  # a user's own token or login: the hub has just authenticated it
        if await self.minter.session_alive(session):
            return
        await self._end_session(session)
        raise SessionEnded("The session this credential belongs to has ended")

    async def _end_session(self, session: ParentSession) -> None:
        """Revoke every token minted for an ended session, and the credential that asked."""
        if session.via is not None:
            await self.minter.revoke([session.via], reason="parent-revoked")
        await self.minter.revoke_minted(
            user=session.user, session_ref=session.ref, reason="parent-revoked"
        )

    async def _issue(
        self,
        session: ParentSession,
        *,
        kind: str,
        service: str | None,
        scopes: frozenset[str],
        lifetime: int,
        minimum_lifetime: int | None,
    ) -> IssuedToken:
        now = time.time()
        end = now + lifetime
        if self.max_lifetime:
            end = min(end, now + self.max_lifetime)
        if session.expires_at is not None:
            end = min(end, session.expires_at)
        need = required_lifetime(self.settings, lifetime, minimum_lifetime)
        if end - now < need + MINT_SLACK:
            raise LifetimeUnavailable(
                f"A new {kind} token could live {max(0, int(end - now))} s, less than the "
                f"{need} s required: its parent session or lifetime policy ends sooner"
            )
        parent_expiry = keyed_expiry(session.kind, session.expires_at)
        key = self.key(session.user, kind, session.ref, parent_expiry, service, scopes)

        def fresh(entry: CachedToken) -> bool:
            # never past the parent presented (see keyed_expiry), and the reuse rule
            outlives = session.expires_at is not None and entry.expires_at > session.expires_at
            return not outlives and may_reuse(
                entry.expires_at, entry.created, need, minimum_lifetime
            )

        async def reusable(value: Sequence[Any]) -> bool:
            if len(value) != len(CachedToken._fields):  # written by another version: a miss
                return False
            entry = CachedToken(*value)  # a list when it comes from a shared backend
            if not fresh(entry):
                return False
            if await self.minter.alive(entry.ref):
                return True
            await self.settings.delete(key)  # revoked in the hub: evict
            return False

        async def mint() -> tuple[CachedToken, float]:
            if end - time.time() < need:  # waited too long for a lease
                raise LifetimeUnavailable(f"The parent session of this {kind} token ends too soon")
            lineage = Lineage.of(session, kind=kind, service=service)
            minted = await self.minter.mint(
                session.user, key.parts[3], expires_at=end, lineage=lineage, session=session
            )
            self.log.info(
                "Minted %s token %s for %s%s (expires in %i s)",
                kind,
                minted["id"],
                session.user,
                f" and service {service}" if service else "",
                minted["expires_at"] - time.time(),
            )
            self.events.publish(
                [
                    Event(
                        MINTED,
                        user=session.user,
                        token_ids=(minted["id"],),
                        kind=kind,
                        service=service,
                    )
                ]
            )
            entry = CachedToken(
                minted["token"], minted["id"], minted["expires_at"], minted["created"], minted["fp"]
            )
            return entry, entry.expires_at

        try:
            value, created = await self.settings.get_or_create(key, mint, accept=reusable)
        except SessionEnded:
            await self._end_session(session)
            raise
        entry = CachedToken(*value)
        if not fresh(entry):  # made for a caller with a lower bar or a later parent, or slow
            raise LifetimeUnavailable(
                f"No {kind} token with {need} s left could be made in time; ask again"
            )
        return IssuedToken(
            token=entry.token,
            id=entry.id,
            expires_at=entry.expires_at,
            scopes=key.parts[3],
            cached=not created,
            service=service,
        )

    @staticmethod
    def key(
        user: str,
        kind: str,
        ref: str,
        parent_expires_at: float | None,
        service: str | None,
        scopes: Iterable[str],
    ) -> CacheKey:
        """The cache key of a token: everything its reuse depends on.

        The sorted scopes are one tuple, shared by every key with the same scope set
        (a user's sessions all ask for the same scopes), which keeps a memory entry small.
        """
        return CacheKey(
            user, kind, (ref, parent_expires_at, service or "", _sorted(frozenset(scopes)))
        )

    # -- revoking and forgetting ------------------------------------------------------

    async def revoke_server(self, user: str, server: str) -> int:
        """Delete from the hub every token minted for ``user``'s server ``server``.

        Deleting the server's own token already takes its children with it (the
        cascade); this also covers servers that keep their token across a stop.
        """
        return await self.minter.revoke_minted(user=user, server=server, reason="server-stopped")

    async def reset(
        self,
        user: str | None = None,
        *,
        revoke: bool = False,
        progress: Callable[[int], None] | None = None,
        job: str | None = None,
    ) -> dict[str, Any]:
        """Forget every cached token (or ``user``'s); with ``revoke``, delete them from the hub too.

        Revoking deletes a committed batch at a time (``progress`` hears the count after
        each), so a reset of a large hub takes a while and the hub serves requests all
        along; each batch's tokens are evicted and announced as it commits. The cache is
        cleared, and the reset announced, once every token is gone. ``job`` names the
        reset's record, which the batches count themselves in (hub/resets.py).
        """
        revoked = 0
        if revoke:
            revoked = await self.minter.revoke_minted(
                user=user, reason="admin-reset", progress=progress, job=job
            )
        cleared = await self.settings.clear(user)
        self.events.publish([Event(CACHE_RESET, user=user, extra={"revoked": revoked})])
        return {"cleared": cleared, "revoked": revoked}

    def forget(self, rows: Iterable[MintedRow]) -> None:
        """Evict the entries of tokens that ended (called as their deletion commits)."""
        for row in rows:
            lineage = row.lineage
            if lineage.kind not in ("notebook", "internal"):
                continue
            expiry = keyed_expiry(lineage.session_kind, lineage.session_expires_at)
            key = self.key(row.user, lineage.kind, lineage.session_ref, expiry,
                           lineage.service, row.scopes)  # fmt: skip
            self.settings.discard(key)

    def forget_user(self, name: str) -> None:
        """Forget a user's entries (renamed or deleted: their keys name the old user)."""
        self.settings.discard_user(name)

    # -- reporting ----------------------------------------------------------------------

    async def listing(
        self,
        user: str | None = None,
        *,
        kind: str | None = None,
        service: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[MintedRow], int]:
        """One page of the live tokens this extension minted, oldest first, and their total."""
        if kind not in (None, "notebook", "internal"):
            raise InvalidRequest("kind must be notebook or internal")
        return await self.minter.listing(
            user, kind=kind, service=service, offset=offset, limit=limit
        )

    def stats(self) -> dict[str, Any]:
        """What the admin stats route shows."""
        stats = self.settings.stats()
        stats["mints"] = stats.pop("creations")
        for counts in stats["by_kind"].values():
            counts["mints"] = counts.pop("creations")
        return stats
