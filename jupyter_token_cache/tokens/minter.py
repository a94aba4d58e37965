"""Who makes the tokens: what the policy needs from a minter (the hub adapter provides one)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol



@dataclass(frozen=True, slots=True)
class MintedRow:
    """A token this extension minted, as the hub database holds it (no secret)."""

    id: str
    user: str
    note: str
    scopes: tuple[str, ...]


class Minter(Protocol):
    """What the policy needs from the hub: scope arithmetic, and token rows.

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
        self, user: str, scopes: Iterable[str], *, expires_in: int, note: str, session_id: str | None
    ) -> dict[str, Any]:
        """A new token: ``{"token", "id", "expires_at", "created"}``."""

    async def alive(self, token_id: str) -> bool:
        """True while the token exists in the hub (the caller checks the expiry it holds)."""

    async def minted(self, user: str | None = None) -> list[MintedRow]:
        """Tokens whose note says this extension minted them (signature not checked here)."""

    async def revoke(self, token_ids: Iterable[str]) -> int:
        """Delete tokens from the hub; return how many were there."""
