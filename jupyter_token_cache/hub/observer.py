"""Seeing every token row end in the hub database, where it happens: in the flush that deletes it.

Notes
-----
JupyterHub ends tokens on many paths — its tokens API and token page, logout, user
deletion (ORM cascades), server stop, the hourly purge of expired tokens — and offers
no hook for any of them. They all go through the ORM (``db.delete``), so the one place
that sees them all is SQLAlchemy's unit of work:

- ``after_delete`` on :class:`orm.APIToken` records each deleted row (with its lineage,
  read and removed on the same connection) and why it ended;
- ``after_flush_postexec`` deletes, in the same transaction, every token this extension
  minted from a deleted row, which repeats until nothing is left (the cascade): a parent
  and its children disappear in one commit, before the response that deleted it;
- ``after_commit`` hands what ended (and every change of what a token may do: users
  renamed or deleted, roles, groups, shares, services — see :func:`_changes`) to the
  extension, which evicts cache entries and publishes events; a rollback forgets it.

Bulk ``DELETE`` statements on the token table bypass the unit of work; ``do_orm_execute``
reads the rows they will delete first and treats them the same way. What no session
event can see (raw SQL, changes made outside the hub) is caught by
:meth:`DatabaseObserver.sweep`, run periodically.

Why a token ended is known to our own code paths (``ending(reason)``); for JupyterHub's
paths it is read from the function that deleted the row (``clear_login_cookie`` is a
logout, ``User.stop`` a server stop, ``purge_expired`` an expiry), found by walking a
few frames up the stack when a row is deleted — deletions are rare, and JupyterHub
offers nothing better to tell them apart.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, cast

from jupyterhub import orm
from sqlalchemy import delete, event, or_, select
from sqlalchemy.orm import Session, attributes, object_session

from ..times import epoch_seconds
from ..tokens.lineage import Lineage
from ..tokens.models import TokenRef
from .lineage import LINEAGE, fingerprint, from_row, is_row

#: Where our own code says why it deletes tokens.
_REASON: ContextVar[str | None] = ContextVar("jupyter_token_cache_ending", default=None)
#: Key of the observer in ``Session.info``.
INFO_KEY = "jupyter_token_cache_observer"

#: JupyterHub functions that delete tokens, by (file, function), and what that means.
_CALLERS = {
    (os.path.join("handlers", "base.py"), "clear_login_cookie"): "logout",
    ("user.py", "stop"): "server-stopped",
    ("orm.py", "purge_expired"): "expired",
}
_FRAMES = 80
#: Ends of a whole session: what was minted in it ends for the same reason.
_SESSION_ENDS = ("server-stopped", "logout", "user-deleted")


@contextlib.contextmanager
def ending(reason: str) -> Iterator[None]:
    """Tokens deleted (and committed) inside this block end for ``reason``."""
    token = _REASON.set(reason)
    try:
        yield
    finally:
        _REASON.reset(token)


def _jupyterhub_reason() -> str | None:
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_FRAMES):
        if frame is None:
            return None
        code = frame.f_code
        if "jupyterhub" in code.co_filename:
            for (path, name), reason in _CALLERS.items():
                if code.co_name == name and code.co_filename.endswith(path):
                    return reason
        frame = frame.f_back
    return None


@dataclass(slots=True)
class EndedToken:
    """A token row that was deleted (no secret, no hash: its id, owner, kind, why)."""

    ref: TokenRef
    row_id: int
    user_id: int | None
    owner: str | None
    kind: str
    scopes: tuple[str, ...]
    session_id: str | None
    reason: str
    lineage: Lineage | None = None
    #: Already looked for children (the cascade runs once per row).
    cascaded: bool = False
    #: When the row was created (epoch seconds; None when the row was not read).
    created: float | None = None


#: Whom a :class:`Change` is about.
USER, GROUP, SERVICE, EVERYONE = "user", "group", "service", "everyone"


@dataclass(frozen=True, slots=True)
class Change:
    """A change that can make a cached answer wrong: about one user, group or service, or
    about everyone (a role's scopes, a rename that scope filters follow)."""

    kind: str
    name: str
    reason: str
    previous_name: str | None = None


@dataclass(slots=True)
class _Pending:
    ended: dict[int, EndedToken] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    deleted_users: set[int] = field(default_factory=set)
    #: token id -> reason, for children the cascade is deleting
    cascading: dict[int, str] = field(default_factory=dict)


def token_kind(target: Any, lineage: Lineage | None) -> str:
    """What kind of token a row is: its lineage's, else read from its owner, note and client."""
    if lineage is not None:
        return lineage.kind
    if target.service_id is not None:
        return "service"
    if (target.note or "").startswith("Server at "):
        return "server"
    if target.client_id and target.client_id != "jupyterhub":
        return "oauth"
    return "api"


class DatabaseObserver:
    """Watch one hub database session; report what ended and what changed as it commits."""

    def __init__(
        self,
        db: Session,
        on_commit: Callable[[list[EndedToken], list[Change]], None],
        *,
        log: Any,
    ) -> None:
        self.db = db
        self.on_commit = on_commit
        self.log = log
        self._pending = _Pending()

    # -- wiring ---------------------------------------------------------------------------

    def install(self) -> None:
        """Start observing ``db`` (replacing an observer installed before on it)."""
        _install_mapper_hooks()
        previous = self.db.info.get(INFO_KEY)
        if previous is not None:
            previous.remove()
        self.db.info[INFO_KEY] = self
        for name, fn in self._hooks():
            event.listen(self.db, name, fn)

    def remove(self) -> None:
        if self.db.info.get(INFO_KEY) is self:
            del self.db.info[INFO_KEY]
        for name, fn in self._hooks():
            if event.contains(self.db, name, fn):
                event.remove(self.db, name, fn)

    def _hooks(self) -> list[tuple[str, Callable[..., None]]]:
        return [
            ("after_flush", self._after_flush),
            ("after_flush_postexec", self._cascade),
            ("after_commit", self._after_commit),
            ("after_rollback", self._after_rollback),
            ("do_orm_execute", self._bulk_delete),
        ]

    # -- what the unit of work reports ----------------------------------------------------

    def token_deleted(self, connection: Any, target: Any) -> None:
        pending = self._pending
        lineage = None
        row = connection.execute(select(LINEAGE).where(LINEAGE.c.token_id == target.id)).first()
        fp = fingerprint(target.hashed)
        if row is not None:
            if hmac.compare_digest(row.token_fp, fp):
                lineage = from_row(row)
            connection.execute(delete(LINEAGE).where(LINEAGE.c.token_id == target.id))
        expires_at = target.expires_at
        reason = _REASON.get()
        if reason is None:
            reason = pending.cascading.get(target.id)
        if reason is None:
            reason = _jupyterhub_reason()
        if reason is None and expires_at is not None and expires_at <= orm.APIToken.now():
            reason = "expired"
        pending.ended[target.id] = EndedToken(
            ref=TokenRef(f"a{target.id}", fp),
            row_id=target.id,
            user_id=target.user_id,
            owner=_owner_name(connection, target),
            kind=token_kind(target, lineage),
            scopes=tuple(target.scopes or ()),
            session_id=target.session_id,
            reason=reason or "deleted",
            lineage=lineage,
            created=epoch_seconds(target.created),
        )

    def user_deleted(self, target: Any) -> None:
        self._pending.deleted_users.add(target.id)
        self._pending.changes.append(Change(USER, target.name, "deleted"))

    def user_updated(self, target: Any) -> None:
        history = _history(target, "name")
        if history.deleted and history.added:
            self._pending.changes += [
                Change(USER, history.added[0], "renamed", previous_name=history.deleted[0]),
                # scopes filtered by the old name (!user=, !server=) now name someone else
                Change(EVERYONE, "", "renamed"),
            ]

    def _after_flush(self, session: Session, context: Any) -> None:
        pending = self._pending
        for ended in pending.ended.values():
            if ended.user_id in pending.deleted_users:
                ended.reason = "user-deleted"
        seen = set(pending.changes)
        for obj in (*session.new, *session.dirty, *session.deleted):
            for change in _changes(obj, session):
                if change not in seen:
                    seen.add(change)
                    pending.changes.append(change)

    def _bulk_delete(self, state: Any) -> None:
        """A bulk ``DELETE`` of token rows: record each row and cascade, as a flush would.

        ``query(APIToken).filter(...).delete()`` and ``delete(APIToken)`` statements bypass
        the unit of work, so the rows they will delete are read first, with the same
        criteria, in the same transaction.
        """
        if not (state.is_delete and state.bind_mapper is not None):
            return
        if state.bind_mapper.class_ is orm.Share:
            self._shares_deleted(state)
            return
        if state.bind_mapper.class_ is not orm.APIToken:
            return
        try:
            session = state.session
            where = state.statement.whereclause
            query = select(orm.APIToken) if where is None else select(orm.APIToken).where(where)
            with session.no_autoflush:
                doomed = session.execute(query, state.parameters).scalars().all()
                connection = session.connection()
                for target in doomed:
                    self.token_deleted(connection, target)
                self._cascade_once(session)
        except Exception:
            self.log.exception("Token cache: could not follow a bulk delete of tokens")

    def _shares_deleted(self, state: Any) -> None:
        """A bulk ``DELETE`` of shares (JupyterHub's "revoke all shares of a server"): whom
        they granted something loses it, as when a flush deletes one share."""
        user_name = select(orm.User.name).where(orm.User.id == orm.Share.user_id)
        group_name = select(orm.Group.name).where(orm.Group.id == orm.Share.group_id)
        query = select(user_name.scalar_subquery(), group_name.scalar_subquery()).select_from(
            orm.Share
        )
        where = state.statement.whereclause
        if where is not None:
            query = query.where(where)
        try:
            with state.session.no_autoflush:
                holders = state.session.execute(query, state.parameters).all()
        except Exception:
            self.log.exception("Token cache: could not follow a bulk delete of shares")
            return
        for user, group in holders:
            kind, name = (USER, user) if user is not None else (GROUP, group)
            if name is not None and Change(kind, name, "shares") not in self._pending.changes:
                self._pending.changes.append(Change(kind, name, "shares"))

    def _cascade(self, session: Session, context: Any) -> None:
        """Delete, in this transaction, what was minted from the rows this flush deleted.

        A failure here is logged, never raised: it must not break the hub's own delete
        (the sweep revokes what a failed cascade left).
        """
        try:
            self._cascade_once(session)
        except Exception:
            self.log.exception("Token cache: could not revoke the children of deleted tokens")

    def _cascade_once(self, session: Session) -> None:
        fresh = [e for e in self._pending.ended.values() if not e.cascaded]
        if not fresh:
            return
        parents = {e.row_id: e.ref.fp for e in fresh}
        # a session that ended (server stop, logout, user deletion) ends its children for
        # the same reason; any other end of a credential revokes what was minted from it
        why = {e.row_id: e.reason if e.reason in _SESSION_ENDS else "parent-revoked" for e in fresh}
        for ended in self._pending.ended.values():
            ended.cascaded = True
        with session.no_autoflush:
            rows = session.execute(
                select(LINEAGE).where(
                    or_(LINEAGE.c.via_id.in_(parents), LINEAGE.c.root_id.in_(parents))
                )
            ).all()
            children = {}
            for row in rows:
                if row.via_id is not None and parents.get(row.via_id) == row.via_fp:
                    children[row.token_id] = (row.token_fp, why[row.via_id])
                elif row.root_id is not None and parents.get(row.root_id) == row.root_fp:
                    children[row.token_id] = (row.token_fp, why[row.root_id])
            children = {k: v for k, v in children.items() if k not in self._pending.ended}
            if not children:
                return
            for token in session.query(orm.APIToken).filter(orm.APIToken.id.in_(children)):
                fp, reason = children[token.id]
                if is_row(token.hashed, fp):
                    self._pending.cascading[token.id] = reason
                    session.delete(token)

    def _after_commit(self, session: Session) -> None:
        pending, self._pending = self._pending, _Pending()
        if pending.ended or pending.changes:
            try:
                self.on_commit(list(pending.ended.values()), pending.changes)
            except Exception:
                self.log.exception("Token cache: could not evict or announce ended tokens")

    def _after_rollback(self, session: Session) -> None:
        self._pending = _Pending()

    # -- the backstop ---------------------------------------------------------------------

    def sweep(self) -> int:
        """Revoke what the unit of work could not see end; return how many rows were dealt with.

        Lineage rows whose token is gone (deleted by raw SQL or outside the hub)
        are reported as ended and removed; tokens whose session root or credential is
        gone are deleted (parent-revoked), which cascades as any delete does.
        """
        db = self.db
        rows = db.execute(select(LINEAGE)).all()
        if not rows:
            return 0
        ids = (
            {r.token_id for r in rows}
            | {r.root_id for r in rows if r.root_id}
            | {r.via_id for r in rows if r.via_id}
        )
        live = {
            row.id: fingerprint(row.hashed)
            for row in db.query(orm.APIToken.id, orm.APIToken.hashed).filter(
                orm.APIToken.id.in_(ids)
            )
        }
        gone = [r for r in rows if live.get(r.token_id) != r.token_fp]
        gone_ids = {r.token_id for r in gone}
        orphans = [
            r.token_id
            for r in rows
            if r.token_id not in gone_ids
            and r.kind in ("notebook", "internal")
            and (
                (r.root_id is not None and live.get(r.root_id) != r.root_fp)
                or (r.via_id is not None and live.get(r.via_id) != r.via_fp)
            )
        ]
        ended = [
            EndedToken(
                ref=TokenRef(f"a{r.token_id}", r.token_fp),
                row_id=r.token_id,
                user_id=r.user_id,
                owner=None,
                kind=r.kind,
                scopes=(),
                session_id=r.session_id,
                reason="deleted",
                lineage=from_row(r),
                cascaded=True,
            )
            for r in gone
        ]
        if gone:
            db.execute(delete(LINEAGE).where(LINEAGE.c.token_id.in_(gone_ids)))
        if orphans:
            with ending("parent-revoked"):
                for token in db.query(orm.APIToken).filter(orm.APIToken.id.in_(orphans)):
                    db.delete(token)
        db.commit()
        if ended:  # rows deleted where no flush saw them: no cache key (scopes unknown)
            self.on_commit(ended, [])
        return len(gone) + len(orphans)


def _owner_name(connection: Any, target: Any) -> str | None:
    loaded = target.__dict__.get("user") or target.__dict__.get("service")
    if loaded is not None:
        return cast("str", loaded.name)
    table = orm.User.__table__ if target.user_id is not None else orm.Service.__table__
    owner_id = target.user_id if target.user_id is not None else target.service_id
    if owner_id is None:
        return None
    return cast(
        "str | None",
        connection.execute(select(table.c.name).where(table.c.id == owner_id)).scalar(),
    )


def _changes(obj: Any, session: Session) -> Iterator[Change]:
    """What ``obj``'s change (new, dirty or deleted in this flush) does to what tokens may do.

    Histories are read without loading anything: this runs on every flush, and a dirty
    user (its last activity, say) must not cost a query. Whole groups and services are
    named once rather than member by member; changes no list of names can bound (a role's
    scopes, a deleted role, a group renamed under ``!group=`` filters) concern everyone.
    """
    gone = obj in session.deleted
    if isinstance(obj, orm.User):
        if _changed(obj, "roles") or _changed(obj, "admin"):
            yield Change(USER, obj.name, "roles")
        if _changed(obj, "groups"):
            yield Change(USER, obj.name, "groups")
    elif isinstance(obj, orm.Group):
        history = _history(obj, "users")
        for user in (*history.added, *history.deleted):
            yield Change(USER, user.name, "groups")
        names = _history(obj, "name")
        if gone:
            yield Change(GROUP, obj.name, "deleted")
        elif names.deleted and names.added:
            yield Change(GROUP, names.added[0], "renamed", previous_name=names.deleted[0])
            yield Change(EVERYONE, "", "renamed")
        elif _changed(obj, "roles"):
            yield Change(GROUP, obj.name, "roles")
    elif isinstance(obj, orm.Service):
        if gone:
            yield Change(SERVICE, obj.name, "deleted")
        elif _changed(obj, "roles") or _changed(obj, "admin"):
            yield Change(SERVICE, obj.name, "roles")
    elif isinstance(obj, orm.Role):
        if gone or (_changed(obj, "scopes") and obj not in session.new):
            yield Change(EVERYONE, "", "scopes")
            return
        for kind, name in ((USER, "users"), (GROUP, "groups"), (SERVICE, "services")):
            history = _history(obj, name)
            for holder in (*history.added, *history.deleted):
                yield Change(kind, holder.name, "roles")
    elif isinstance(obj, orm.Share):
        if obj in session.new or gone or _changed(obj, "_scopes") or _changed(obj, "expires_at"):
            for kind, holder in (
                (USER, obj.__dict__.get("user")),
                (GROUP, obj.__dict__.get("group")),
            ):
                if holder is not None:
                    yield Change(kind, holder.name, "shares")


def _history(obj: Any, name: str) -> Any:
    passive = attributes.PASSIVE_NO_INITIALIZE  # type: ignore[attr-defined]  # re-exported, not in __all__
    return attributes.get_history(obj, name, passive=passive)


def _changed(obj: Any, name: str) -> bool:
    return bool(_history(obj, name).has_changes())


def _observer_of(target: Any) -> DatabaseObserver | None:
    session = object_session(target)
    return None if session is None else session.info.get(INFO_KEY)


def _on_token_delete(mapper: Any, connection: Any, target: Any) -> None:
    observer = _observer_of(target)
    if observer is not None:
        try:
            observer.token_deleted(connection, target)
        except Exception:
            observer.log.exception("Token cache: could not record a deleted token")


def _on_user_delete(mapper: Any, connection: Any, target: Any) -> None:
    observer = _observer_of(target)
    if observer is not None:
        observer.user_deleted(target)


def _on_user_update(mapper: Any, connection: Any, target: Any) -> None:
    observer = _observer_of(target)
    if observer is not None:
        observer.user_updated(target)


def _install_mapper_hooks() -> None:
    """Mapper events are process-wide: install them once; they find the observer per session."""
    if event.contains(orm.APIToken, "after_delete", _on_token_delete):
        return
    event.listen(orm.APIToken, "after_delete", _on_token_delete)
    event.listen(orm.User, "after_delete", _on_user_delete)
    event.listen(orm.User, "after_update", _on_user_update)
