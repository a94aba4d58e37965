"""The minter that uses the hub's own database: real JupyterHub API tokens, in-process."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from jupyterhub import orm
from sqlalchemy import text
from jupyterhub.scopes import (
    _check_scopes_exist,
    _intersect_expanded_scopes,
    expand_scopes,
    get_scopes_for,
)

from ..tokens.lineage import NOTE_PREFIX
from ..tokens.minter import MintedRow
from ..tokens.models import Forbidden, InvalidRequest


def epoch_seconds(when: datetime | None) -> float | None:
    """JupyterHub stores naive UTC datetimes."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


_EXISTS = text(f"SELECT 1 FROM {orm.APIToken.__tablename__} WHERE id = :id")


def _row_id(token_id: str) -> int | None:
    """JupyterHub's REST id "a123" -> 123."""
    if token_id.startswith("a") and token_id[1:].isdigit():
        return int(token_id[1:])
    return None


class OrmMinter:
    """Mint real JupyterHub API tokens through the hub's ORM, inside the hub process.

    Notes
    -----
    Tokens are created exactly as ``POST /hub/api/users/{name}/tokens`` creates them
    (``orm.APIToken.new``), so JupyterHub itself checks that their scopes are within the
    owner's; a token is never created with the default token role: scopes are always
    explicit. The ORM is synchronous and the hub runs it on its event loop thread, as
    its own handlers do.
    """

    def __init__(self, db: Any) -> None:
        self.db = db
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
            raise Forbidden(f"No such user: {name}")
        return orm_user

    def user_scopes(self, user: str) -> frozenset[str]:
        return frozenset(get_scopes_for(self._user(user)))

    def expand(self, scopes: Iterable[str], user: str) -> frozenset[str]:
        return self._expanded(tuple(scopes), user)

    def _expand(self, scopes: tuple[str, ...], user: str) -> frozenset[str]:
        try:
            _check_scopes_exist(scopes)
        except KeyError:  # its message echoes the scope, which is the caller's input
            raise InvalidRequest("Unknown scope") from None
        return frozenset(expand_scopes(scopes, owner=self._owner(user)))

    def intersect(self, a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
        return frozenset(_intersect_expanded_scopes(a, b, db=self.db))

    async def mint(
        self, user: str, scopes: Iterable[str], *, expires_in: int, note: str, session_id: str | None
    ) -> dict[str, Any]:
        scopes = sorted(scopes)
        if not scopes:  # an empty list would mean "the default token role" to the hub
            raise Forbidden("No scopes left to grant")
        try:
            token = orm.APIToken.new(
                user=self._user(user),
                scopes=scopes,
                note=note,
                expires_in=expires_in,
                session_id=session_id,
            )
        except ValueError as e:  # scopes beyond the owner's
            self.db.rollback()
            raise Forbidden(str(e)) from None
        row = orm.APIToken.find(self.db, token)
        return {
            "token": token,
            "id": row.api_id,
            "expires_at": epoch_seconds(row.expires_at),
            "created": epoch_seconds(row.created),
        }

    async def alive(self, token_id: str) -> bool:
        """True while the row exists; the caller checks the expiry it cached.

        JupyterHub never changes a token's expiry, so existence is all the database has
        to say. A prepared text statement costs ~30 µs here, a fresh ``select()`` ~100.
        """
        row_id = _row_id(token_id)
        if row_id is None:
            return False
        return self.db.execute(_EXISTS, {"id": row_id}).first() is not None

    async def minted(self, user: str | None = None) -> list[MintedRow]:
        query = (
            self.db.query(orm.APIToken, orm.User.name)
            .join(orm.User, orm.APIToken.user_id == orm.User.id)
            .filter(orm.APIToken.note.startswith(NOTE_PREFIX))
        )
        if user is not None:
            query = query.filter(orm.User.name == user)
        return [
            MintedRow(id=row.api_id, user=name, note=row.note, scopes=tuple(row.scopes))
            for row, name in query
        ]

    async def revoke(self, token_ids: Iterable[str]) -> int:
        ids = [i for i in map(_row_id, token_ids) if i is not None]
        if not ids:
            return 0
        count = 0
        for row in self.db.query(orm.APIToken).filter(orm.APIToken.id.in_(ids)):
            self.db.delete(row)
            count += 1
        self.db.commit()
        return count
