"""Who makes the tokens: what the policy needs from a minter (the hub adapter provides one)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..times import iso8601
from .lineage import Lineage
from .models import ParentSession, TokenRef


@dataclass(frozen=True, slots=True)
class MintedRow:
    """A token this extension minted, as the hub database holds it (no secret)."""

    ref: TokenRef
    user: str
    scopes: tuple[str, ...]
    lineage: Lineage
    #: Epoch seconds: when the row was created, when it expires (None: never), last used.
    created: float | None = None
    expires_at: float | None = None
    last_activity: float | None = None

    def model(self) -> dict[str, Any]:
        """The admin listing's item: what the token is for, never the token or its hash."""
        return {
            "id": self.ref.id,
            "user": self.user,
            "kind": self.lineage.kind,
            "service": self.lineage.service,
            "session_kind": self.lineage.session_kind,
            "server": self.lineage.server,
            "scopes": list(self.scopes),
            "created": iso8601(self.created),
            "expires_at": iso8601(self.expires_at),
            "last_activity": iso8601(self.last_activity),
        }


class Minter(Protocol):
    """What the policy needs from the hub: scope arithmetic, token rows and their lineage.

    Scope methods are synchronous (they only read the hub's role tables); anything that
    writes or may do I/O is a coroutine, so a minter that talks to the hub's REST API
    over httpx can take this one's place.
    """

    def user_scopes(self, user: str) -> frozenset[str]:
        """Every scope ``user`` holds, expanded."""

    def expand(self, scopes: Iterable[str], user: str) -> frozenset[str]:
        """``scopes`` expanded for ``user`` ("!user" becomes "!user=<name>"); 400 if unknown."""

    def intersect(self, a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
        """What both expanded scope sets allow (filters understood: a server is within its user)."""

    async def mint(
        self,
        user: str,
        scopes: Iterable[str],
        *,
        expires_at: float,
        lineage: Lineage,
        session: ParentSession,
    ) -> dict[str, Any]:
        """A new token ``{"token", "id", "fp", "expires_at", "created"}``, recorded with its lineage.

        Expires at ``expires_at`` exactly. Raises
        :class:`~jupyter_token_cache.tokens.models.SessionEnded` when ``session`` has
        ended by the time the token would exist (nothing is left behind then).
        """

    async def alive(self, ref: TokenRef) -> bool:
        """True while that very token row exists (the caller checks the expiry it holds)."""

    async def session_alive(self, session: ParentSession) -> bool:
        """True while the session (its root row, its server, its login) and the credential live."""

    async def listing(
        self,
        user: str | None = None,
        *,
        kind: str | None = None,
        service: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[MintedRow], int]:
        """One page of the live tokens this extension minted, oldest first, and their total.

        Paged, filtered and counted where the tokens are kept: a page costs the same
        however many tokens there are, and the hub's event loop runs between steps.
        """

    async def revoke(self, refs: Iterable[TokenRef], *, reason: str) -> int:
        """Delete these token rows (and, by cascade, what was minted from them); return how many."""

    async def revoke_minted(
        self,
        *,
        reason: str,
        user: str | None = None,
        server: str | None = None,
        session_ref: str | None = None,
        progress: Callable[[int], None] | None = None,
        job: str | None = None,
    ) -> int:
        """Delete every token minted here (for ``user``; for sessions of ``server``; for
        the session ``session_ref``) in committed batches, telling ``progress`` the count
        after each; return how many. ``job`` names the reset whose record each batch
        counts itself in (it survives restarts; see hub/resets.py)."""
