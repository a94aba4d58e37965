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

import asyncio
import contextlib
import hmac
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

from jupyterhub import orm
from sqlalchemy import Integer, Text, bindparam, delete, event, func, literal_column, or_, select
from sqlalchemy.orm import Session, attributes, joinedload, object_session

from ..times import epoch_seconds
from ..tokens.lineage import Lineage
from ..tokens.models import TokenRef
from .collector import full_collections_deferred
from .lineage import BATCH, LINEAGE, PAUSE, TOKENS, fingerprint, from_row, is_row
from .walks import INFO_KEY, Walk

#: Where our own code says why it deletes tokens.
_REASON: ContextVar[str | None] = ContextVar("jupyter_token_cache_ending", default=None)

#: JupyterHub functions that delete tokens, by (file, function), and what that means.
_CALLERS = {
    (os.path.join("handlers", "base.py"), "clear_login_cookie"): "logout",
    ("user.py", "stop"): "server-stopped",
    ("orm.py", "purge_expired"): "expired",
}
_FRAMES = 80
#: Ends of a whole session: what was minted in it ends for the same reason.
_SESSION_ENDS = ("server-stopped", "logout", "user-deleted")
#: Not looked up yet (a per-flush memo's empty slot).
_UNKNOWN = object()
_T = TypeVar("_T")


_USERS, _SERVICES = orm.User.__table__, orm.Service.__table__
#: The token table's scopes as text (JSON): a statement that holds the column itself is
#: not cached, as its type is not marked safe to cache (``cache_ok``), and is compiled
#: again at every execution; decoded by :func:`stored_scopes`.
SCOPES_TEXT = literal_column(f"{TOKENS.name}.scopes", Text)
#: Token rows about to be deleted by a statement, with their owners' names.
_DOOMED = select(
    *(c for c in TOKENS.c if c.name != "scopes"),
    SCOPES_TEXT.label("scopes"),
    func.coalesce(_USERS.c.name, _SERVICES.c.name).label("owner"),
).select_from(
    TOKENS.outerjoin(_USERS, _USERS.c.id == TOKENS.c.user_id).outerjoin(
        _SERVICES, _SERVICES.c.id == TOKENS.c.service_id
    )
)


def _sweep_step_query() -> Any:
    """A step of the sweep: :data:`BATCH` lineage rows after ``:after``, in key order, each
    with the hashes of its token, its session row and its credential (None when gone)."""
    token, root, via = (TOKENS.alias(name) for name in ("token", "root", "via"))
    page = (
        select(LINEAGE)
        .where(LINEAGE.c.token_id > bindparam("after", type_=Integer))
        .order_by(LINEAGE.c.token_id)
        .limit(BATCH)
        .subquery()
    )
    return (
        select(
            page,
            token.c.hashed.label("hashed"),
            root.c.hashed.label("root_hashed"),
            via.c.hashed.label("via_hashed"),
        )
        .select_from(
            page.outerjoin(token, token.c.id == page.c.token_id)
            .outerjoin(root, root.c.id == page.c.root_id)
            .outerjoin(via, via.c.id == page.c.via_id)
        )
        .order_by(page.c.token_id)
    )


_SWEEP_STEP = _sweep_step_query()


def stored_scopes(stored: Any) -> list[str]:
    """A token row's scopes: a list (an ORM object's), or JSON text (a plain row's)."""
    if isinstance(stored, str):
        return list(json.loads(stored))
    return list(stored or ())


def token_rows(session: Session) -> Any:
    """A query of token rows, each with the rows its deletion reads loaded alongside.

    JupyterHub expires the other side of every relationship of a deleted row (its
    owner's token list, its OAuth client's), loading each side it was not given: without
    these joins, deleting a batch of rows cost three queries a row.
    """
    token = orm.APIToken
    return session.query(token).options(
        joinedload(token.user), joinedload(token.service), joinedload(token.oauth_client)
    )


async def pause() -> None:
    """Let the rest of the hub run between two batches of a walk, for :data:`PAUSE`.

    Notes
    -----
    ``asyncio.sleep(0)`` would give the event loop one turn, and a request takes several
    (its bytes read, its handler started, the database answer, its answer written): each
    request would advance one step per batch, and wait as long as a few batches. A few
    milliseconds let every request that was waiting finish first.
    """
    await asyncio.sleep(PAUSE)


def batches(items: Sequence[_T], size: int = BATCH) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``size``: what one ``IN`` list may hold."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


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
    #: Its lineage row read (and removed): once per flush, for every row at once.
    resolved: bool = False


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
    #: Per flush: the JupyterHub function deleting rows (one walk up the stack per flush)
    #: and owners' names by (table, id) (one query per owner, not per row).
    caller: Any = _UNKNOWN
    owners: dict[tuple[str, int], str | None] = field(default_factory=dict)


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
        self._sweeping = False
        #: The last sweep (the stats route shows it): when, how long, rows walked and dealt with.
        self.last_sweep: dict[str, Any] = {"runs": 0}

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
        """Record a token row a flush deleted; its lineage is read with the others of its flush.

        Notes
        -----
        This runs for every row a flush deletes (a user's deletion, JupyterHub's purge),
        so it reads nothing per row: the lineage rows of all of them are read and removed
        in a few statements when the flush is done (:meth:`_resolve`), the reason comes
        from one walk up the stack per flush, and an owner's name from one query per
        owner (none when the row's owner is loaded).
        """
        loaded = target.__dict__.get("user") or target.__dict__.get("service")
        self._record(
            target, self._owner_name(connection, target.user_id, target.service_id, loaded)
        )

    def _record(self, target: Any, owner: str | None) -> None:
        """Record the token row ``target`` (an ORM object, or a row of the token table)."""
        pending = self._pending
        expires_at = target.expires_at
        reason = _REASON.get()
        if reason is None:
            reason = pending.cascading.get(target.id)
        if reason is None:
            if pending.caller is _UNKNOWN:
                pending.caller = _jupyterhub_reason()
            reason = pending.caller
        if reason is None and expires_at is not None and expires_at <= orm.APIToken.now():
            reason = "expired"
        pending.ended[target.id] = EndedToken(
            ref=TokenRef(f"a{target.id}", fingerprint(target.hashed)),
            row_id=target.id,
            user_id=target.user_id,
            owner=owner,
            kind=token_kind(target, None),
            scopes=tuple(stored_scopes(target.scopes)),
            session_id=target.session_id,
            reason=reason or "deleted",
            created=epoch_seconds(target.created),
        )

    def _owner_name(
        self, connection: Any, user_id: int | None, service_id: int | None, loaded: Any = None
    ) -> str | None:
        """The name of a token's owner: ``loaded`` (the row's loaded relationship), else
        looked up once per owner and flush."""
        if loaded is not None:
            return str(loaded.name)
        if user_id is not None:
            key = (orm.User.__tablename__, user_id)
        elif service_id is not None:
            key = (orm.Service.__tablename__, service_id)
        else:
            return None
        owners = self._pending.owners
        if key not in owners:
            table = orm.Base.metadata.tables[key[0]]
            owners[key] = connection.execute(
                select(table.c.name).where(table.c.id == key[1])
            ).scalar()
        return owners[key]

    def stale_lineage(self, session: Session, rows: Iterable[Any]) -> None:
        """Lineage rows whose token ended where no flush saw it, found (and removed) by a
        mint that got the token's id: they end at this transaction's commit, with what
        was minted from them (the cascade)."""
        for ended in self._ended_unseen(session.connection(), rows):
            ended.cascaded = False
            self._pending.ended[ended.row_id] = ended

    def _ended_unseen(self, connection: Any, rows: Iterable[Any]) -> list[EndedToken]:
        """What lineage rows of tokens that ended unseen say: owner, kind, why (an expiry
        that had passed, or a deletion)."""
        now = time.time()
        ended = []
        for r in rows:
            expired = r.token_expires_at is not None and r.token_expires_at <= now
            owner = self._owner_name(connection, r.user_id, None)
            ended.append(
                EndedToken(
                    ref=TokenRef(f"a{r.token_id}", r.token_fp),
                    row_id=r.token_id,
                    user_id=r.user_id,
                    owner=owner,
                    kind=r.kind,
                    scopes=(),
                    session_id=r.session_id,
                    reason="expired" if expired else "deleted",
                    lineage=from_row(r),
                    cascaded=True,
                    resolved=True,
                )
            )
        self._pending.owners.clear()
        return ended

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
        criteria, in the same transaction: as plain rows with their owners' names (one
        statement, no ORM object per row). This extension's own batches (resets, the
        sweep) delete this way.
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
            self._pending.caller = _UNKNOWN
            where = state.statement.whereclause
            query = _DOOMED if where is None else _DOOMED.where(where)
            with session.no_autoflush:
                for row in session.execute(query, state.parameters):
                    self._record(row, row.owner)
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
        finally:  # the next flush has its own caller and may see renamed owners
            self._pending.caller = _UNKNOWN
            self._pending.owners.clear()

    def _resolve(self, session: Session) -> None:
        """Read (and remove) the lineage rows of the rows deleted since the last time, a
        batch of ids per statement."""
        fresh = [e for e in self._pending.ended.values() if not e.resolved]
        for chunk in batches(fresh):
            ids = [e.row_id for e in chunk]
            rows = {
                r.token_id: r
                for r in session.execute(select(LINEAGE).where(LINEAGE.c.token_id.in_(ids)))
            }
            if rows:
                session.execute(delete(LINEAGE).where(LINEAGE.c.token_id.in_(list(rows))))
            for ended in chunk:
                row = rows.get(ended.row_id)
                if row is not None and hmac.compare_digest(row.token_fp, ended.ref.fp):
                    ended.lineage = from_row(row)
                    ended.kind = ended.lineage.kind
                ended.resolved = True

    def _cascade_once(self, session: Session) -> None:
        with session.no_autoflush:
            self._resolve(session)
            fresh = [e for e in self._pending.ended.values() if not e.cascaded]
            children: dict[int, tuple[str, str]] = {}
            for chunk in batches(fresh):
                self._children(session, chunk, children)
            for ended in fresh:
                ended.cascaded = True
            found = [k for k in children if k not in self._pending.ended]
            for ids in batches(found):
                for token in token_rows(session).filter(orm.APIToken.id.in_(ids)):
                    fp, reason = children[token.id]
                    if is_row(token.hashed, fp):
                        self._pending.cascading[token.id] = reason
                        session.delete(token)

    @staticmethod
    def _children(
        session: Session, parents: Sequence[EndedToken], into: dict[int, tuple[str, str]]
    ) -> None:
        """Add to ``into`` (id -> fingerprint, reason) the tokens minted from ``parents``."""
        fps = {e.row_id: e.ref.fp for e in parents}
        # a session that ended (server stop, logout, user deletion) ends its children for
        # the same reason; any other end of a credential revokes what was minted from it
        why = {
            e.row_id: e.reason if e.reason in _SESSION_ENDS else "parent-revoked" for e in parents
        }
        rows = session.execute(
            select(
                LINEAGE.c.token_id,
                LINEAGE.c.token_fp,
                LINEAGE.c.via_id,
                LINEAGE.c.via_fp,
                LINEAGE.c.root_id,
                LINEAGE.c.root_fp,
            ).where(or_(LINEAGE.c.via_id.in_(fps), LINEAGE.c.root_id.in_(fps)))
        )
        for row in rows:
            if row.via_id is not None and fps.get(row.via_id) == row.via_fp:
                into[row.token_id] = (row.token_fp, why[row.via_id])
            elif row.root_id is not None and fps.get(row.root_id) == row.root_fp:
                into[row.token_id] = (row.token_fp, why[row.root_id])

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

    async def sweep(self) -> int:
        """Revoke what the unit of work could not see end; return how many rows were dealt with.

        Lineage rows whose token is gone (deleted by raw SQL, outside the hub, or by
        JupyterHub's purge at start-up, before this observer was installed) are reported
        as ended and removed; tokens whose session root or credential is gone are
        deleted (parent-revoked), which cascades as any delete does; minted tokens that
        have expired are deleted (expired), so JupyterHub's hourly purge, one flush for
        every expired row of the hub, finds none of them.

        Notes
        -----
        The walk goes through the lineage table in key order, :data:`BATCH` rows per
        step, each row joined to its token, its root and its credential (no ``IN`` list
        of ids); each step commits, on a worker thread with a connection of its own
        (:class:`~jupyter_token_cache.hub.walks.Walk`), then the walk waits a moment
        (:func:`pause`), so the hub answers requests all along however large the
        table. One sweep runs at a time.
        """
        if self._sweeping:
            return 0
        self._sweeping = True
        started, clock = time.time(), time.perf_counter()
        walked = dealt = 0
        after: int | None = 0
        try:
            async with Walk(self.db, apart=True) as walk:
                with full_collections_deferred():
                    while after is not None:
                        rows, count, after = await walk.step(_sweep_step, after)
                        walked, dealt = walked + rows, dealt + count
                        await pause()
        except Exception:
            self.log.exception("Token cache: the sweep stopped")
        finally:
            self._sweeping = False
            self.last_sweep = {
                "runs": self.last_sweep["runs"] + 1,
                "started": started,
                "seconds": time.perf_counter() - clock,
                "walked": walked,
                "dealt": dealt,
            }
        return dealt


def _sweep_step(db: Session, after: int) -> tuple[int, int, int | None]:
    """One step of the sweep on ``db`` (watched by an observer): the rows after ``after``;
    (rows walked, rows dealt with, where the next step starts, or None at the end)."""
    observer: DatabaseObserver = db.info[INFO_KEY]
    rows = db.execute(_SWEEP_STEP, {"after": after}).all()
    if not rows:
        db.commit()  # end the read: nothing stays open across the loop's turns
        return 0, 0, None
    fps: dict[str, str] = {}

    def same(hashed: str | None, fp: str | None) -> bool:
        if hashed is None or fp is None:
            return False
        if hashed not in fps:
            fps[hashed] = fingerprint(hashed)
        return hmac.compare_digest(fps[hashed], fp)

    now = time.time()
    gone: list[Any] = []
    ends: dict[str, list[int]] = {"parent-revoked": [], "expired": []}
    for r in rows:
        if not same(r.hashed, r.token_fp):
            gone.append(r)
        elif r.kind not in ("notebook", "internal"):
            continue
        elif (r.root_id is not None and not same(r.root_hashed, r.root_fp)) or (
            r.via_id is not None and not same(r.via_hashed, r.via_fp)
        ):
            ends["parent-revoked"].append(r.token_id)
        elif r.token_expires_at is not None and r.token_expires_at <= now:
            ends["expired"].append(r.token_id)
    # rows deleted where no flush saw them: no cache key (scopes unknown)
    ended = observer._ended_unseen(db.connection(), gone)
    if gone:
        db.execute(delete(LINEAGE).where(LINEAGE.c.token_id.in_([r.token_id for r in gone])))
    for reason, ids in ends.items():
        if ids:
            with ending(reason):
                db.execute(delete(orm.APIToken).where(orm.APIToken.id.in_(ids)))
    db.commit()
    if ended:
        observer.on_commit(ended, [])
    return len(rows), len(gone) + sum(map(len, ends.values())), rows[-1].token_id


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
