"""Where a minted token comes from: the session it was minted for and the credential that asked."""

from __future__ import annotations

from dataclasses import dataclass

from .models import ParentSession, TokenRef

#: Every note of a token this extension minted starts with this. The note is for people
#: (the hub's token page shows it); it proves nothing, since users can write any note.
NOTE_PREFIX = "jupyter-token-cache"


def note_for(kind: str, service: str | None) -> str:
    """The human-readable note of a minted token."""
    return f"{NOTE_PREFIX}: {kind} token" + (f" for {service}" if service else "")


@dataclass(frozen=True, slots=True)
class Lineage:
    """The origin of a token row this extension knows: minted by it, or a server's own token.

    Notes
    -----
    Lineage is kept by the minter next to the token rows (in the hub, a table of this
    extension's own in the hub database), never in anything a user can write. It names
    the session by row identity (:class:`TokenRef`), not by the owner's name or a key
    derived from the hub's secrets, so it survives a rename, a cookie-secret rotation and
    a restart; and it names the credential that asked (``via``), so ending that
    credential ends what was minted with it, transitively (Gafaelfawr's subtoken cascade).

    Everything the token's cache key depends on is here too, so the entry of a token
    that ends can be evicted without asking anyone.
    """

    #: "notebook" or "internal" (minted here), or "server" (a spawned server's own token).
    kind: str
    #: Kind of the session: "login", "server", "token" or "upstream".
    session_kind: str
    #: :attr:`ParentSession.ref` of the session.
    session_ref: str
    #: Expiry of the session (epoch seconds), part of the cache key.
    session_expires_at: float | None
    #: The session's own row (None for a login session).
    root: TokenRef | None
    #: The credential that asked, when it is not the root.
    via: TokenRef | None
    #: The hub login session id the token carries (logging out deletes it).
    session_id: str | None
    #: The server of a server session.
    server: str | None
    #: The service an internal token is for.
    service: str | None

    @classmethod
    def of(cls, session: ParentSession, *, kind: str, service: str | None = None) -> Lineage:
        """The lineage of a token minted for ``session``."""
        return cls(
            kind=kind,
            session_kind=session.kind,
            session_ref=session.ref,
            session_expires_at=session.expires_at,
            root=session.root,
            via=session.via,
            session_id=session.session_id,
            server=session.server,
            service=service,
        )

    def parent(self, *, user: str, scopes: frozenset[str], credential: TokenRef) -> ParentSession:
        """The original session of a minted credential, limited to the credential's scopes."""
        return ParentSession(
            user=user,
            ref=self.session_ref,
            kind=self.session_kind,
            expires_at=self.session_expires_at,
            scopes=scopes,
            session_id=self.session_id,
            server=self.server,
            minted=self.kind,
            root=self.root,
            via=credential,
        )
