"""Walks over many rows of the hub database whose steps run off JupyterHub's event loop.

Notes
-----
A reset of everyone and the sweep walk the whole lineage table a batch at a time. Run on
the event loop, each step held it for the step's work and then for its commit: measured
at 100,000 tokens on 2 cores (benchmarks/scale.py), a step of 25 revocations was at most
22.5 ms of the loop's CPU but 41-65 ms of wall time, the rest spent waiting for the
database to make the commit durable (SQLite's fsyncs; PostgreSQL's backend busy on the
other core). The loop waited through it, and every request with it. Run apart, the
same walks held it 6-30 ms at most (docs/benchmarks.md, "A hub of many tokens").

A :class:`Walk` with ``apart=True`` runs each step, its statements and its commit, on a
worker thread, with a session and a connection of its own: the loop only hands the step
over and takes its result back, and waits for nothing while the database works (the
driver releases the GIL while it waits; Python's own work in the step shares the GIL
with the loop a switch interval, 5 ms, at a time). The walk's session is watched by a
:class:`~jupyter_token_cache.hub.observer.DatabaseObserver` of its own, whose reports
are handed, on the loop and after the step's commit, to the hub's observer's
``on_commit``: what ended is evicted and announced exactly as for the hub's own session.
Objects of the hub's session that stood for rows the walk deleted are taken out of it
(as the same bulk delete in that session would have done).

Walks that run as jobs of their own go apart (a reset, the sweep), and the admin listing,
which only reads. A revocation inside a request (a session's or a server's few tokens)
stays on the request's session: on SQLite a second connection cannot write while that
session holds the write lock, and the request would wait on itself.

JupyterHub writes its own session as if it were the database's only writer: a request
that authenticates with a token whose row a step is deleting at that moment, and records
the token's activity, finds its update matched no row. JupyterHub catches that in
``BaseHandler.prepare`` ("Failed to get current user"), rolls its session back and
answers as for no credential (403): the token is being revoked.

With an in-memory SQLite database (one connection for the whole process) there is no
second connection to work on: every walk runs on the loop, as it did.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from jupyterhub import orm
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from .lineage import is_row

#: Key of the hub session's observer in ``Session.info``.
INFO_KEY = "jupyter_token_cache_observer"

_T = TypeVar("_T")
#: One thread for every walk of the process: steps of concurrent walks take turns (on
#: SQLite they would anyway: one writer at a time).
_executor: ThreadPoolExecutor | None = None


def _worker() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-cache-walk")
    return _executor


def _one_connection(db: Session) -> bool:
    """Whether every session of ``db``'s engine shares one connection (in-memory SQLite)."""
    pool = getattr(db.get_bind(), "pool", None)  # a session bound to a connection has none
    return pool is None or isinstance(pool, StaticPool | SingletonThreadPool)


class Walk:
    """The session a walk's steps run on, and where they run (see the module's notes).

    ``async with Walk(db, apart=...) as walk``, then ``await walk.step(fn, *args)`` for
    each step: ``fn(session, *args)`` runs the step's statements and commits them.
    """

    def __init__(self, db: Session, *, apart: bool) -> None:
        self.main = db
        self.observer = db.info.get(INFO_KEY)
        self.apart = apart and self.observer is not None and not _one_connection(db)
        self.session = db
        self._reported: list[tuple[list[Any], list[Any]]] = []
        #: The step on the worker thread (its own future: cancelling the walk does not
        #: stop a step that has begun; the session is closed after it, never under it).
        self._running: Future[Any] | None = None

    async def __aenter__(self) -> Walk:
        if self.apart:
            assert self.observer is not None
            self.session = Session(bind=self.main.get_bind(), expire_on_commit=False)
            watcher = type(self.observer)(self.session, self._report, log=self.observer.log)
            watcher.install()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.apart:
            return
        running = self._running
        if running is not None and not running.done():  # cancelled mid-step: close after it
            running.add_done_callback(lambda _: self._close())  # on the worker thread
        else:
            self._close()

    def _close(self) -> None:
        watcher = self.session.info.get(INFO_KEY)
        if watcher is not None:
            watcher.remove()
        self.session.close()

    def _report(self, ended: list[Any], changes: list[Any]) -> None:
        """The walk's observer at a commit (on the worker thread): kept for the loop."""
        self._reported.append((ended, changes))

    async def step(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(session, *args)``: on the loop, or on the worker thread, then report
        what its commit ended to the hub's observer, on the loop."""
        if not self.apart:
            return self._run(fn, args)
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        running = _worker().submit(context.run, self._run, fn, args)
        self._running = running
        # once the step's work is over (its commit done), even if the walk was cancelled
        # meanwhile; registered before the walk's own wake-up, so it runs on the loop first
        running.add_done_callback(lambda _: self._hand_over(loop))
        return await asyncio.wrap_future(running)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the worker thread, at the end of a step: deliver its reports on the loop."""
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed (the hub has stopped): nobody to tell
            pass

    def _deliver(self) -> None:
        """Hand what the step's commit ended to the hub's observer (on the loop)."""
        reported, self._reported = self._reported, []
        for ended, changes in reported:
            self._detach(ended)
            try:
                self.observer.on_commit(ended, changes)  # type: ignore[union-attr]
            except Exception:
                self.observer.log.exception(  # type: ignore[union-attr]
                    "Token cache: could not evict or announce ended tokens"
                )

    def _run(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        """The step, on whichever thread: a failure rolls its transaction back."""
        try:
            return fn(self.session, *args)
        except BaseException:
            self.session.rollback()
            raise

    def _detach(self, ended: list[Any]) -> None:
        """Take the rows ``ended`` out of the hub's session, and out of the token lists it
        has loaded: JupyterHub lists a user's tokens from ``user.api_tokens`` as loaded
        in its session (it never expires them on commit), and would go on listing them.
        """
        main = self.main
        for e in ended:
            obj = main.identity_map.get(identity_key(orm.APIToken, e.row_id))
            if obj is None or not is_row(obj.__dict__.get("hashed"), e.ref.fp):
                continue
            owners = [obj.__dict__.get(name) for name in ("user", "service", "oauth_client")]
            user_id = obj.__dict__.get("user_id")
            if user_id is not None:
                owners.append(main.identity_map.get(identity_key(orm.User, user_id)))
            for owner in owners:
                if owner is not None and owner in main:
                    for name in ("api_tokens", "access_tokens"):
                        if name in owner.__dict__:
                            main.expire(owner, [name])
            main.expunge(obj)
