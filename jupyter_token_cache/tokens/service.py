"""The token rules: which token to hand out, when to reuse one, what to revoke."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from ..cache import CacheKey
from .lineage import Lineage
from .minter import Minter, MintedRow
from .models import (
    Forbidden,
    IssuedToken,
    LifetimeUnavailable,
    InvalidRequest,
    ParentSession,
    UnknownService,
    shown,
)
from .policy import TokenCache


class CachedToken(NamedTuple):
    """What the cache holds for a token: a tuple in memory, a JSON list on a shared backend.

    Its scopes are not repeated here: they are part of the key.
    """

    token: str
    id: str
    expires_at: float
    created: float


@lru_cache(maxsize=4096)
def _sorted(scopes: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(scopes))


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
      never answers a request for another.
    - Scopes are explicit and never wider than the parent's: notebook scopes and service
      policies are intersected with what the session holds; named scopes outside either
      are refused, naming them.

    The hub database is the authority: the cache only remembers which token to hand
    out again, and every reuse first checks that the token is still there, so a token
    deleted through the hub's API, by logging out or with its user is never served.
    """

    def __init__(
        self,
        *,
        settings: TokenCache,
        minter: Minter,
        lineage: Lineage,
        max_lifetime: int = 0,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.minter = minter
        self.lineage = lineage
        self.max_lifetime = max_lifetime
        self.log = log or logging.getLogger(__name__)

    # -- asking for tokens ------------------------------------------------------------

    async def notebook_token(
        self, session: ParentSession, *, minimum_lifetime: int | None = None
    ) -> IssuedToken:
        """Return the session's notebook token, minting one only when the cached one can't be reused."""
        if session.minted == "internal":
            raise Forbidden("An internal token cannot be used to get a notebook token")
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
                    raise InvalidRequest(f"scopes[{i}] is not a known scope: {shown(scope)}") from None
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

    def _within(self, expanded: frozenset[str], allowed: frozenset[str]) -> bool:
        return self.minter.intersect(expanded, allowed) == expanded

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
        # Without a requested minimum, a policy lifetime shorter than minimum_lifetime
        # lowers the bar to half of it: otherwise no token of that policy could be reused.
        if minimum_lifetime is None:
            need = min(self.settings.minimum_lifetime, lifetime // 2)
        else:
            need = minimum_lifetime
        if int(end - now) < need:
            raise LifetimeUnavailable(
                f"A new {kind} token could live {max(0, int(end - now))} s, less than the "
                f"{need} s required: its parent session or lifetime policy ends sooner"
            )
        key = self.key(session.user, kind, session.ref, session.expires_at, service, scopes)

        async def reusable(value: Sequence[Any]) -> bool:
            entry = CachedToken(*value)  # a list when it comes from a shared backend
            remaining = entry.expires_at - time.time()
            if minimum_lifetime is not None:
                fresh_enough = remaining >= minimum_lifetime
            else:
                lived = entry.expires_at - entry.created
                fresh_enough = remaining > lived / 2 and remaining >= need
            if not fresh_enough:
                return False
            if await self.minter.alive(entry.id):
                return True
            await self.settings.delete(key)  # revoked in the hub: evict
            return False

        async def mint() -> tuple[CachedToken, float]:
            expires_in = int(end - time.time())
            if expires_in < 1:
                raise LifetimeUnavailable(f"The parent session of this {kind} token ends too soon")
            note = self.lineage.note(session, minted=kind, service=service)
            minted = await self.minter.mint(
                session.user, key.parts[3], expires_in=expires_in, note=note, session_id=session.session_id
            )
            self.log.info(
                "Minted %s token %s for %s%s (expires in %i s)",
                kind,
                minted["id"],
                session.user,
                f" and service {service}" if service else "",
                expires_in,
            )
            entry = CachedToken(minted["token"], minted["id"], minted["expires_at"], minted["created"])
            return entry, entry.expires_at

        value, created = await self.settings.get_or_create(key, mint, accept=reusable)
        entry = CachedToken(*value)
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
        return CacheKey(user, kind, (ref, parent_expires_at, service or "", _sorted(frozenset(scopes))))

    # -- revoking -----------------------------------------------------------------------

    async def revoke_server(self, user: str, server: str) -> int:
        """Delete from the hub, and evict, every token minted for ``user``'s server ``server``."""
        minted = await self._minted(user)
        return await self._revoke(
            [(row, f) for row, f in minted if f.get("k") == "server" and f.get("n") == server]
        )

    async def reset(self, user: str | None = None, *, revoke: bool = False) -> dict[str, Any]:
        """Forget every cached token (or ``user``'s); with ``revoke``, delete them from the hub too."""
        revoked = await self._revoke(await self._minted(user)) if revoke else 0
        cleared = await self.settings.clear(user)
        return {"cleared": cleared, "revoked": revoked}

    async def _minted(self, user: str | None) -> list[tuple[MintedRow, dict[str, Any]]]:
        """Tokens this hub minted, with their verified lineage; forged notes are skipped."""
        found = []
        for row in await self.minter.minted(user):
            fields = self.lineage.read(row.user, row.note)
            if fields is not None:
                found.append((row, fields))
        return found

    async def _revoke(self, minted: list[tuple[MintedRow, dict[str, Any]]]) -> int:
        """Delete tokens from the hub first, then evict the entries that held them."""
        count = await self.minter.revoke([row.id for row, _ in minted])
        for row, fields in minted:
            key = self.key(row.user, fields.get("t", ""), fields.get("r", ""), fields.get("p"),
                           fields.get("s"), row.scopes)  # fmt: skip
            await self.settings.delete(key)
        if count:
            self.log.info("Revoked %i minted token(s)", count)
        return count

    # -- reporting ----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """What the admin stats route shows."""
        stats = self.settings.stats()
        stats["mints"] = stats.pop("creations")
        for counts in stats["by_kind"].values():
            counts["mints"] = counts.pop("creations")
        return stats
