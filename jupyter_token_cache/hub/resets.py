"""Resets as jobs: a reset that revokes many tokens runs on, and the caller follows its handle.

Notes
-----
A reset with revoke deletes every minted token a committed batch at a time
(:meth:`~jupyter_token_cache.tokens.service.TokenService.reset`); on a hub of 100,000
tokens that takes seconds, during which the hub serves requests between batches. The
request that asked for it need not wait: it gets the reset's handle (``202 Accepted``,
``Location: .../token-cache/resets/{id}``) once the reset has run for
:data:`WAIT` seconds, and the command line and the admin page follow the handle until
it is done. A reset that finishes within that time answers ``200`` with its result, as
resets always did, so clients written before the handle existed keep working on hubs
of any size they could reset before.

A reset with revoke also ends upstream sessions (``ending``: the identity-provider
tokens dropped and revoked, ``c.UpstreamTokens``): the user's, or for a reset of
everyone every user's who has an auth state. First, so that a reset answered ``200`` has
ended them; a failure to end one fails the reset, once its tokens are revoked.

Every reset is recorded in the hub database (:data:`~jupyter_token_cache.hub.lineage.RESETS`)
before its request answers: whose tokens, up to which token (those minted after it was
asked for are left alone), whether the upstream sessions were ended, and, counted by
each batch in the batch's own transaction, how many were revoked. A hub stopped or
killed in the middle of a reset resumes it as it starts again, under the same handle,
from where its committed batches left it: a reset that was asked for is finished, or
it says why not. The last :data:`KEEP` that ended are kept for their handles. Asking for
a reset while the same one (same user, same revoke) runs returns the running one.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from ..times import iso8601
from ..tokens.service import TokenService
from .lineage import RESETS, lineage_end

#: Seconds a reset request waits for its reset before it answers with the handle.
WAIT = 1.0
#: Longest wait a request may ask for (``Prefer: wait=N``, RFC 7240).
MAX_WAIT = 60.0
#: Ended resets kept for their handles.
KEEP = 100


@dataclass(eq=False)
class Reset:
    """One reset: what it was asked to do, how far it got, how it ended."""

    id: str
    user: str | None
    revoke: bool
    started: float = field(default_factory=time.time)
    #: Tokens revoked so far (before a restart included).
    revoked: int = 0
    #: Whether the upstream sessions it ends were ended (before a restart included).
    upstream_ended: bool = False
    #: Whether the cache backend was cleared (None until the reset ends).
    cleared: bool | None = None
    finished: float | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def state(self) -> str:
        if self.finished is None:
            return "running"
        return "failed" if self.error else "done"

    def result(self) -> dict[str, Any]:
        """The answer of a reset that ended in time: what ``DELETE`` always answered."""
        return {"cleared": bool(self.cleared), "revoked": self.revoked}

    def model(self) -> dict[str, Any]:
        """The handle's answer (and a ``202``'s): ``cleared`` and ``revoked`` as a ``200``
        has them, so far."""
        return {
            "id": self.id,
            "state": self.state,
            "user": self.user,
            "revoke": self.revoke,
            "cleared": self.cleared,
            "revoked": self.revoked,
            "started": iso8601(self.started),
            "finished": iso8601(self.finished),
            "error": self.error,
        }

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the reset to end; True when it has."""
        if self.task is not None and self.finished is None and timeout > 0:
            await asyncio.wait({self.task}, timeout=timeout)
        return self.finished is not None


class Resets:
    """Start resets, record them, keep their handles, resume those a restart cut short."""

    def __init__(
        self,
        service: TokenService,
        db: Session,
        *,
        log: Any,
        ending: Callable[[str | None], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
        self.db = db
        self.log = log
        #: What else a reset with revoke ends, given the user's name (None: everyone's).
        self.ending = ending
        self._resets: OrderedDict[str, Reset] = OrderedDict()

    def start(self, user: str | None, *, revoke: bool) -> Reset:
        """A new reset of ``user`` (None: everyone), or the same one already running."""
        for reset in self._resets.values():
            if reset.finished is None and (reset.user, reset.revoke) == (user, revoke):
                return reset
        reset = Reset(secrets.token_hex(8), user, revoke)
        self.db.execute(
            insert(RESETS).values(
                id=reset.id,
                username=user,
                revoke=revoke,
                started=reset.started,
                last_token_id=lineage_end(self.db),
                revoked=0,
                upstream_ended=False,
            )
        )
        self.db.commit()
        self._launch(reset)
        return reset

    def resume(self) -> None:
        """As the hub starts: the handles of the last resets, and every reset that a stop
        or a crash cut short goes on from where its committed batches left it."""
        found = self.db.execute(
            select(RESETS)
            .where(RESETS.c.finished.is_not(None))
            .order_by(RESETS.c.finished.desc())
            .limit(KEEP)
        ).all()
        cut = self.db.execute(select(RESETS).where(RESETS.c.finished.is_(None))).all()
        self.db.commit()  # end the read
        for row in [*reversed(found), *sorted(cut, key=lambda r: r.started)]:
            reset = Reset(row.id, row.username, row.revoke, started=row.started)
            reset.revoked, reset.upstream_ended = row.revoked, row.upstream_ended
            reset.finished, reset.cleared, reset.error = row.finished, row.cleared, row.error
            self._resets[reset.id] = reset
            if reset.finished is None:
                self.log.warning(
                    "Token cache reset %s for %s was cut short (%i revoked); it goes on",
                    reset.id,
                    reset.user or "all users",
                    reset.revoked,
                )
                self._launch(reset)

    def get(self, reset_id: str) -> Reset | None:
        return self._resets.get(reset_id)

    def _launch(self, reset: Reset) -> None:
        self._resets[reset.id] = reset
        reset.task = asyncio.get_running_loop().create_task(
            self._run(reset), name=f"token-cache-reset-{reset.id}"
        )

    async def _run(self, reset: Reset) -> None:
        before = reset.revoked  # revoked before a restart

        def progress(count: int) -> None:
            reset.revoked = before + count

        upstream_ended = await self._end(reset)
        try:
            result = await self.service.reset(
                reset.user, revoke=reset.revoke, progress=progress, job=reset.id
            )
            reset.cleared, reset.revoked = result["cleared"], before + result["revoked"]
            if not upstream_ended:
                reset.error = "The user's upstream session could not be ended; see the hub's log"
        except asyncio.CancelledError:  # the hub stops: its record says the next one goes on
            self.log.warning(
                "Token cache reset %s stops with the hub (%i revoked); the next hub goes on",
                reset.id,
                reset.revoked,
            )
            raise
        except Exception:
            self.log.exception("Token cache reset %s failed", reset.id)
            reset.error = "The reset failed; see the hub's log"
        reset.finished = time.time()
        self._finished(reset)

    def _finished(self, reset: Reset) -> None:
        """Record how ``reset`` ended; forget the oldest of those beyond :data:`KEEP`."""
        ended = [r for r in self._resets.values() if r.finished is not None]
        for old in ended[: max(0, len(ended) - KEEP)]:
            del self._resets[old.id]
        kept = (
            select(RESETS.c.finished)
            .where(RESETS.c.finished.is_not(None))
            .order_by(RESETS.c.finished.desc())
            .limit(1)
            .offset(KEEP - 1)
            .scalar_subquery()
        )
        try:
            self.db.execute(
                update(RESETS)
                .where(RESETS.c.id == reset.id)
                .values(finished=reset.finished, cleared=reset.cleared, error=reset.error)
            )
            self.db.execute(delete(RESETS).where(RESETS.c.finished < kept))
            self.db.commit()
        except Exception:
            self.db.rollback()
            self.log.exception("Token cache reset %s: could not record its end", reset.id)

    async def _end(self, reset: Reset) -> bool:
        """End the user's (or everyone's) upstream session for a reset with revoke, once
        (a resumed reset that had ended them does not end newer ones); False if that
        failed."""
        if self.ending is None or not reset.revoke or reset.upstream_ended:
            return True
        try:
            await self.ending(reset.user)
        except Exception:
            self.log.exception("Token cache reset %s: ending upstream sessions failed", reset.id)
            return False
        reset.upstream_ended = True
        self.db.execute(update(RESETS).where(RESETS.c.id == reset.id).values(upstream_ended=True))
        self.db.commit()
        return True


def requested_wait(prefer: str | None) -> float:
    """Seconds to wait for a reset, from a ``Prefer`` header (RFC 7240): ``respond-async``
    is 0, ``wait=N`` is N (at most :data:`MAX_WAIT`), anything else :data:`WAIT`."""
    wait = WAIT
    for preference in (prefer or "").lower().split(","):
        name, _, value = (part.strip() for part in preference.partition("="))
        if name == "respond-async":
            return 0.0
        if name == "wait":
            try:
                wait = min(MAX_WAIT, max(0.0, float(value)))
            except ValueError:
                continue
    return wait
