"""The minter that uses the hub's own database: real JupyterHub API tokens, in-process."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Container, Iterable
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from jupyterhub import orm
from jupyterhub.scopes import (
    _check_scopes_exist,
    _intersect_expanded_scopes,
    expand_scopes,
    get_scopes_for,
)
from sqlalchemy import UnicodeText, delete, insert, literal_column, select, text

from ..times import epoch_seconds
from ..tokens.lineage import Lineage, note_for
from ..tokens.minter import MintedRow
from ..tokens.models import Forbidden, InvalidRequest, ParentSession, SessionEnded, TokenRef, shown
from .lineage import LINEAGE, from_row, is_row, ref_of, row_id, to_row
from .observer import ending

_HASHED = text(f"SELECT hashed FROM {orm.APIToken.__tablename__} WHERE id = :id")  # noqa: S608 - a constant table name

#: A token row's scopes as the JSON text JupyterHub stores, not as its ``JSONList`` column:
#: that type sets no ``cache_ok``, so SQLAlchemy warns (SAWarning) each time a statement
#: naming the column is compiled. JupyterHub's own entity queries never name it that way.
_SCOPES = literal_column(f"{orm.APIToken.__tablename__}.scopes", UnicodeText).label("scopes")


def _scopes_of(stored: str | None) -> tuple[str, ...]:
    """``_SCOPES`` read back as JupyterHub's ``JSONList`` reads it (NULL is no scopes)."""
    return tuple(json.loads(stored)) if stored else ()


def naive_utc(epoch: float) -> datetime:
    """Epoch seconds as JupyterHub stores times (naive UTC)."""
    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)


class OrmMinter:
    """Mint real JupyterHub API tokens through the hub's ORM, inside the hub process.

    Notes
    -----
    Tokens are created exactly as ``POST /hub/api/users/{name}/tokens`` creates them
    (``orm.APIToken.new``), so JupyterHub itself checks that their scopes are within the
    owner's; a token is never created with the default token role: scopes are always
    explicit. The ORM is synchronous and the hub runs it on its event loop thread, as
    its own handlers do; that is what makes a mint atomic with respect to everything
    else in the hub: between the check that the session lives and the commit of the
    token and its lineage there is no ``await``, so no stop, logout or delete can slip
    in between. ``APIToken.new`` commits on its own; the lineage row and the exact expiry
    follow in a second commit with nothing in between.

    ``server_active(user, server)`` tells whether a server still runs (and is not
    stopping); ``ended_logins`` holds login sessions seen logging out.
    """

    def __init__(
        self,
        db: Any,
        *,
        server_active: Callable[[str, str], bool] | None = None,
        ended_logins: Container[str] = (),
    ) -> None:
        self.db = db
        self.server_active = server_active or (lambda user, server: True)
        self.ended_logins = ended_logins
        self._expanded = lru_cache(maxsize=4096)(self._expand)

    @staticmethod
    @lru_cache(maxsize=4096)
    def _owner(name: str) -> Any:
        """A detached ``orm.User`` standing for ``name`` in scope expansion.

        JupyterHub's ``expand_scopes`` only reads the owner's type and name (its own cache
        is keyed by them); looking the user up in the database for it cost more than the
        rest of a cache hit. This object is never added to a session.
        """
        return orm.User(name=name)

    def _user(self, name: str) -> Any:
        orm_user = orm.User.find(self.db, name)
        if orm_user is None:
            raise Forbidden(f"No such user: {shown(name)}")
        return orm_user

    def user_scopes(self, user: str) -> frozenset[str]:
        return frozenset(get_scopes_for(self._user(user)))

    def token_scopes(self, orm_token: Any) -> frozenset[str]:
        """What a token row grants (its scopes within its owner's), expanded."""
        return frozenset(get_scopes_for(orm_token))

    def expand(self, scopes: Iterable[str], user: str) -> frozenset[str]:
        return self._expanded(tuple(scopes), user)

    def _expand(self, scopes: tuple[str, ...], user: str) -> frozenset[str]:
        try:
            _check_scopes_exist(scopes)
            return frozenset(expand_scopes(scopes, owner=self._owner(user)))
        except KeyError:  # its message echoes the scope, which is the caller's input
            raise InvalidRequest("Unknown scope") from None
        except ValueError:  # an empty or malformed filter ("read:users!user=")
            raise InvalidRequest("A scope has an empty or malformed filter") from None

    def intersect(self, a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
        return frozenset(_intersect_expanded_scopes(a, b, db=self.db))

    # -- token rows ---------------------------------------------------------------------

    async def mint(
        self,
        user: str,
        scopes: Iterable[str],
        *,
        expires_at: float,
        lineage: Lineage,
        session: ParentSession,
    ) -> dict[str, Any]:
        scopes = sorted(scopes)
        if not scopes:  # an empty list would mean "the default token role" to the hub
            raise Forbidden("No scopes left to grant")
        orm_user = self._user(user)
        if not self._session_alive(session):
            raise SessionEnded("The session this token was asked for has ended")
        try:
            token = orm.APIToken.new(
                user=orm_user,
                scopes=scopes,
                note=note_for(lineage.kind, lineage.service),
                expires_in=max(1, math.ceil(expires_at - time.time())),
                session_id=lineage.session_id,
            )
        except ValueError as e:  # scopes beyond the owner's
            self.db.rollback()
            raise Forbidden(str(e)) from None
        row = orm.APIToken.find(self.db, token)
        row.expires_at = min(row.expires_at, naive_utc(expires_at))  # never past the parent
        ref = ref_of(row)
        self.db.execute(insert(LINEAGE).values(to_row(ref, orm_user.id, lineage)))
        self.db.commit()
        return {
            "token": token,
            "id": ref.id,
            "fp": ref.fp,
            "expires_at": epoch_seconds(row.expires_at),
            "created": epoch_seconds(row.created),
        }

    async def alive(self, ref: TokenRef) -> bool:
        """True while that very row exists; the caller checks the expiry it cached.

        JupyterHub never changes a token's expiry, so existence is all the database has
        to say: one primary-key lookup (a prepared text statement, ~30 µs here) and a
        hash of the row's hash to tell it from a row that inherited its id.
        """
        return self._exists(ref)

    def _exists(self, ref: TokenRef) -> bool:
        id_ = row_id(ref.id)
        if id_ is None:
            return False
        hashed = self.db.execute(_HASHED, {"id": id_}).scalar()
        return is_row(hashed, ref.fp)

    async def session_alive(self, session: ParentSession) -> bool:
        return self._session_alive(session)

    def _session_alive(self, session: ParentSession) -> bool:
        """The session's root row, the credential's row, its server and its login all live."""
        if session.via is not None and not self._exists(session.via):
            return False
        if session.root is not None and not self._exists(session.root):
            return False
        if session.kind == "server" and not self.server_active(session.user, session.server or ""):
            return False
        if session.kind == "login" and session.session_id in self.ended_logins:
            return False
        return True

    def lineage_of(self, orm_token: Any) -> Lineage | None:
        """The lineage of this very token row, if this extension recorded one."""
        row = self.db.execute(select(LINEAGE).where(LINEAGE.c.token_id == orm_token.id)).first()
        if row is None or not is_row(orm_token.hashed, row.token_fp):
            return None
        return from_row(row)

    def record_server(self, orm_token: Any, lineage: Lineage) -> None:
        """Remember that ``orm_token`` is a spawned server's own token (its session's root)."""
        ref = ref_of(orm_token)
        self.db.execute(delete(LINEAGE).where(LINEAGE.c.token_id == orm_token.id))
        self.db.execute(insert(LINEAGE).values(to_row(ref, orm_token.user_id, lineage)))
        self.db.commit()

    async def minted(
        self, user: str | None = None, *, server: str | None = None
    ) -> list[MintedRow]:
        query = (
            select(
                LINEAGE,
                orm.APIToken.hashed,
                _SCOPES,
                orm.APIToken.created,
                orm.APIToken.expires_at,
                orm.APIToken.last_activity,
                orm.User.name,
            )
            .join(orm.APIToken, orm.APIToken.id == LINEAGE.c.token_id)
            .join(orm.User, orm.User.id == orm.APIToken.user_id)
            .where(LINEAGE.c.kind.in_(("notebook", "internal")))
        )
        if user is not None:
            query = query.where(orm.User.name == user)
        if server is not None:
            query = query.where(LINEAGE.c.session_kind == "server", LINEAGE.c.server == server)
        return [
            MintedRow(
                ref=TokenRef(f"a{row.token_id}", row.token_fp),
                user=row.name,
                scopes=_scopes_of(row.scopes),
                lineage=from_row(row),
                created=epoch_seconds(row.created),
                expires_at=epoch_seconds(row.expires_at),
                last_activity=epoch_seconds(row.last_activity),
            )
            for row in self.db.execute(query.order_by(LINEAGE.c.token_id))
            if is_row(row.hashed, row.token_fp)
        ]

    async def revoke(self, refs: Iterable[TokenRef], *, reason: str) -> int:
        wanted = {row_id(ref.id): ref.fp for ref in refs}
        wanted.pop(None, None)
        if not wanted:
            return 0
        count = 0
        with ending(reason):
            for row in self.db.query(orm.APIToken).filter(orm.APIToken.id.in_(wanted)):
                if is_row(row.hashed, wanted[row.id]):
                    self.db.delete(row)
                    count += 1
            self.db.commit()
        return count
