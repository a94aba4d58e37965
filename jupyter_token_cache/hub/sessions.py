"""Which parent session a hub request (or a server being spawned) acts for."""

from __future__ import annotations

import hmac
from collections import OrderedDict
from typing import Any

from jupyterhub import orm
from jupyterhub.user import User
from jupyterhub.utils import compare_token

from ..tokens.lineage import Lineage
from ..tokens.minter import Minter
from ..tokens.models import Forbidden, ParentSession
from .minter import epoch_seconds

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
      user's scopes, and its children carry its session id so logging out revokes them.
    - *A spawned server's API token*: the session of that server, granting the user's
      scopes (the user started it); its children are revoked when the server stops.
      A note saying "Server at" proves nothing (users can write any note), so the token
      must match the spawner's token in memory or, after a hub restart, the hashed
      secret of the server's OAuth client; the answer is remembered per token id.
    - *A token minted by this cache*: its signed lineage names the original session.
    - *Any other user API or OAuth token*: its own session, granting the token's scopes.
    """

    def __init__(self, *, lineage: Lineage, minter: Minter, memo_size: int = 10_000) -> None:
        self.lineage = lineage
        self.minter = minter
        self._servers: OrderedDict[int, str | None] = OrderedDict()
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
                ref=self.lineage.session_ref(f"login:{session_id or user.cookie_id}"),
                kind="login",
                expires_at=float(int(issued + handler.cookie_max_age_days * 86400)),
                scopes=frozenset(handler.expanded_scopes),
                session_id=session_id,
            )
        scopes = frozenset(handler.expanded_scopes)
        fields = self.lineage.read(user.name, orm_token.note)
        if fields is not None:
            return self.lineage.parent(
                fields, user=user.name, scopes=scopes, session_id=orm_token.session_id
            )
        server = self._server_of(user, orm_token, handler.get_auth_token())
        if server is not None:
            return self._server_session(user, orm_token, server)
        return ParentSession(
            user=user.name,
            ref=self.lineage.session_ref(f"token:{orm_token.id}"),
            kind="token",
            expires_at=_expiry(orm_token.expires_at),
            scopes=scopes,
            session_id=orm_token.session_id,
        )

    def for_server(self, user: User, spawner: Any) -> ParentSession | None:
        """The session of a server being spawned (its API token is already in the hub)."""
        orm_token = orm.APIToken.find(user.db, spawner.api_token) if spawner.api_token else None
        if orm_token is None:
            return None
        self._remember(orm_token.id, spawner.name)
        return self._server_session(user, orm_token, spawner.name)

    def _server_session(self, user: User, orm_token: Any, server: str) -> ParentSession:
        return ParentSession(
            user=user.name,
            ref=self.lineage.session_ref(f"server:{orm_token.id}"),
            kind="server",
            expires_at=_expiry(orm_token.expires_at),
            scopes=self.minter.user_scopes(user.name),
            server=server,
        )

    def _server_of(self, user: User, orm_token: Any, token: str) -> str | None:
        if not (orm_token.note or "").startswith(SERVER_NOTE):
            return None
        if orm_token.id in self._servers:
            return self._servers[orm_token.id]
        found = None
        for name, spawner in user.spawners.items():
            if spawner.api_token and hmac.compare_digest(spawner.api_token, token):
                found = name
                break
        else:  # after a hub restart spawners no longer hold their tokens
            for name, orm_spawner in user.orm_spawners.items():
                client = orm_spawner.oauth_client
                if client is not None and client.secret and compare_token(client.secret, token):
                    found = name
                    break
        self._remember(orm_token.id, found)
        return found

    def _remember(self, token_id: int, server: str | None) -> None:
        self._servers[token_id] = server
        if len(self._servers) > self._memo_size:
            self._servers.popitem(last=False)
