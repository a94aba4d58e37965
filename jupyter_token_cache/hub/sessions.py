"""Which parent session a hub request (or a server being spawned) acts for."""

from __future__ import annotations

import hmac
from collections import OrderedDict
from typing import Any, cast

from jupyterhub import orm
from jupyterhub.user import User
from jupyterhub.utils import compare_token

from ..times import epoch_seconds
from ..tokens.lineage import NOTE_PREFIX, Lineage
from ..tokens.models import Forbidden, ParentSession, TokenRef
from ..tokens.service import TokenService
from .lineage import ref_of
from .minter import OrmMinter

#: Notes JupyterHub gives the API token of each server it spawns.
SERVER_NOTE = "Server at "


def _expiry(when: Any) -> float | None:
    epoch = epoch_seconds(when)
    return None if epoch is None else float(int(epoch))


def cookie_issued_at(raw: str | None) -> float | None:
    """When a tornado signed cookie (v1 or v2 format) was issued; None if unreadable."""
    if not raw:
        return None
    parts = raw.split("|")
    try:
        if parts[0] == "2" and len(parts) >= 3:
            return float(parts[2].partition(":")[2])
        if len(parts) == 3:
            return float(parts[1])
    except ValueError:
        return None
    return None


class SessionResolver:
    """Turn the credential of a request into a :class:`ParentSession`.

    Notes
    -----
    - *Login cookie* (with XSRF, checked by the hub): the session is the hub's login
      session (``jupyterhub-session-id``), ending when the cookie does; it grants the
      cookie's scopes, and its children carry its session id so logging out revokes them.
    - *A spawned server's API token*: the session of that server; its children are
      revoked when the server stops. It grants what the operator gave servers (the
      token's own scopes) plus ``notebook_scopes`` — or, with ``server_session_scopes =
      "user"``, all the user's scopes (see :meth:`TokenService.server_scopes`).
    - *A token minted by this cache*: its recorded lineage names the original session.
    - *Any other user API or OAuth token*: its own session, granting the token's scopes.

    Whether a token is a server's or minted here is looked up in the lineage table by
    the very row (id and fingerprint), never by a note (users write notes) nor by an id
    alone (ids are reused). A server token spawned before the table knew it is proved
    once — it must match the spawner's token in memory or, after a restart, the hashed
    secret of the server's OAuth client — and then recorded. Tokens that proved not to
    be a server's are remembered by row (bounded), so a forged "Server at" note costs
    the hash comparisons once.
    """

    def __init__(
        self, *, service: TokenService, minter: OrmMinter, memo_size: int = 10_000
    ) -> None:
        self.service = service
        self.minter = minter
        self._not_servers: OrderedDict[TokenRef, None] = OrderedDict()
        self._memo_size = memo_size

    def from_request(self, handler: Any) -> ParentSession:
        """The parent session of an authenticated hub API request."""
        user = handler.current_user
        if user is None:
            raise Forbidden("Missing or invalid credentials")
        if not isinstance(user, User):
            raise Forbidden("Only users' credentials can ask for tokens")
        orm_token = handler.get_token()
        if orm_token is None:  # login cookie: the hub has checked it and its XSRF token
            session_id = handler.get_session_cookie()
            issued = cookie_issued_at(handler.get_cookie(handler.hub.cookie_name))
            if issued is None:
                raise Forbidden("Cannot tell when this login session ends; log in again")
            return ParentSession(
                user=user.name,
                ref=f"login:{session_id or 'cookie:' + user.cookie_id}",
                kind="login",
                expires_at=float(int(issued + handler.cookie_max_age_days * 86400)),
                scopes=frozenset(handler.expanded_scopes),
                session_id=session_id,
            )
        scopes = frozenset(handler.expanded_scopes)
        ref = ref_of(orm_token)
        note = orm_token.note or ""
        if note.startswith((NOTE_PREFIX, SERVER_NOTE)):
            lineage = self.minter.lineage_of(orm_token)
            if lineage is not None and lineage.kind == "server":
                return self._server_session(user, orm_token, lineage.server or "")
            if lineage is not None:
                return lineage.parent(user=user.name, scopes=scopes, credential=ref)
            if note.startswith(SERVER_NOTE):
                server = self._server_of(user, orm_token, ref, handler.get_auth_token())
                if server is not None:
                    return self._server_session(user, orm_token, server, record=True)
        return ParentSession(
            user=user.name,
            ref=f"token:{ref.id}:{ref.fp}",
            kind="token",
            expires_at=_expiry(orm_token.expires_at),
            scopes=scopes,
            session_id=orm_token.session_id,
            root=ref,
        )

    def for_upstream(
        self, user: str, ref: str, expires_at: float | None, scopes: frozenset[str]
    ) -> ParentSession:
        """The session of an identity provider's token being exchanged (kind "upstream").

        ``ref`` names the upstream session (its ``sid``, ``jti`` or the token's HMAC), so
        every hub token of that session is revoked when the provider ends it; it has no
        row in the hub, so nothing but its expiry ends it here. ``scopes`` are what the
        exchange may grant: the user's own, or fewer when the request names ``scope``.
        """
        return ParentSession(
            user=user,
            ref=ref,
            kind="upstream",
            expires_at=None if expires_at is None else float(int(expires_at)),
            scopes=scopes,
        )

    def for_server(self, user: User, spawner: Any) -> ParentSession | None:
        """The session of a server being spawned (its API token is already in the hub)."""
        orm_token = orm.APIToken.find(user.db, spawner.api_token) if spawner.api_token else None
        if orm_token is None:
            return None
        return self._server_session(user, orm_token, spawner.name, record=True)

    def _server_session(
        self, user: User, orm_token: Any, server: str, *, record: bool = False
    ) -> ParentSession:
        ref = ref_of(orm_token)
        session = ParentSession(
            user=user.name,
            ref=f"server:{ref.id}:{ref.fp}",
            kind="server",
            expires_at=_expiry(orm_token.expires_at),
            scopes=self.service.server_scopes(user.name, self.minter.token_scopes(orm_token)),
            server=server,
            root=ref,
        )
        if record:
            self.minter.record_server(orm_token, Lineage.of(session, kind="server"))
        return session

    def _server_of(self, user: User, orm_token: Any, ref: TokenRef, token: str) -> str | None:
        if ref in self._not_servers:
            return None
        for name, spawner in user.spawners.items():
            if spawner.api_token and hmac.compare_digest(spawner.api_token, token):
                return cast("str", name)
        # after a hub restart spawners no longer hold their tokens
        for name, orm_spawner in user.orm_spawners.items():
            client = orm_spawner.oauth_client
            if client is not None and client.secret and compare_token(client.secret, token):
                return cast("str", name)
        self._not_servers[ref] = None
        if len(self._not_servers) > self._memo_size:
            self._not_servers.popitem(last=False)
        return None
