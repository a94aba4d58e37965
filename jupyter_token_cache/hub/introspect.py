"""POST /hub/api/token-cache/introspect: RFC 7662 token introspection, for caching services.

Notes
-----
A service that checks tokens with JupyterHub's ``HubAuth`` calls ``GET /hub/api/user``
*with the token it checks*: the hub then records that token's activity and answers with
whatever the token may read about its owner. Introspection turns that around, as RFC
7662 does: the service authenticates with its own token (holding
``custom:token-cache:introspect``) and sends the token in the body, so it also learns
about tokens that may not read their owner's model (groups, kind, session, expiry), and
gets exactly ``{"active": false}`` for anything it may not use.

Every inactive answer looks and costs the same: a token that is malformed, empty or
huge is replaced by a random one of the usual length and looked up like any other, so
neither the answer, its status nor its timing tells an unknown token from an expired,
deleted or malformed one. Active answers carry ``last_event_id``, the hub's event
stream position just before the token was looked up (:mod:`jupyter_token_cache.tokens.trust`):
a cache that follows the stream drops the answer when a later event ends the token or
changes its owner, its groups or its roles (ids are reused, so an event older than the
answer says nothing about it), and a process that has not seen every event since that
position asks again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyterhub import orm
from jupyterhub.utils import utcnow
from tornado import web

from ..cache.answers import INACTIVE
from ..rest import introspected_token, write_json
from ..scopes import INTROSPECT_SCOPE
from ..times import epoch_seconds
from ..tokens.lineage import NOTE_PREFIX
from .handlers import TokenCacheAPIHandler
from .observer import token_kind
from .sessions import SERVER_NOTE

if TYPE_CHECKING:
    from .minter import OrmMinter


class IntrospectHandler(TokenCacheAPIHandler):
    """RFC 7662 introspection of JupyterHub API tokens (JSON or form-encoded ``token``)."""

    def check_xsrf_cookie(self) -> None:
        """Token-authenticated callers only; a cookie cannot introspect (see ``post``)."""

    async def post(self) -> None:
        if self.current_user is None or self.get_token() is None:
            raise web.HTTPError(403, f"Requires {INTROSPECT_SCOPE} (with a token)")
        if INTROSPECT_SCOPE not in self.expanded_scopes:
            raise web.HTTPError(403, f"Requires {INTROSPECT_SCOPE}")
        token = introspected_token(self)
        stats = self.extension.token_introspections
        stats["requests"] += 1
        # before the lookup: every event after it is judged against the answer
        position = self.extension.token_events.position()
        orm_token = orm.APIToken.find(self.db, token)
        answer = self._answer(orm_token, position) if orm_token is not None else None
        stats["active" if answer is not None else "inactive"] += 1
        write_json(self, INACTIVE if answer is None else answer)

    def _answer(self, orm_token: Any, position: int) -> dict[str, Any] | None:
        owner = orm_token.user or orm_token.service
        if owner is None:
            return None
        now = utcnow(with_tz=False)
        if self._record_activity(orm_token, now):
            self.db.commit()
        minter: OrmMinter = self.extension.token_minter
        note = orm_token.note or ""
        lineage = (
            minter.lineage_of(orm_token) if note.startswith((NOTE_PREFIX, SERVER_NOTE)) else None
        )
        scopes = sorted(minter.token_scopes(orm_token))
        answer: dict[str, Any] = {
            "active": True,
            "scope": " ".join(scopes),
            "scopes": scopes,
            "token_type": "bearer",
            "exp": _epoch(orm_token.expires_at),
            "iat": _epoch(orm_token.created),
            "username": owner.name,
            "owner_kind": "service" if orm_token.service is not None else "user",
            "token_id": orm_token.api_id,
            "session_id": orm_token.session_id or (lineage.session_id if lineage else None),
            "kind": token_kind(orm_token, lineage),
            "groups": sorted(g.name for g in getattr(owner, "groups", ())),
            "admin": bool(getattr(owner, "admin", False)),
            "last_event_id": position,
        }
        if lineage is not None and lineage.service:
            answer["service"] = lineage.service
        if answer["exp"] is None:
            del answer["exp"]
        self.extension.token_watch.described(orm_token)
        return answer


def _epoch(when: Any) -> int | None:
    seconds = epoch_seconds(when)
    return None if seconds is None else int(seconds)
