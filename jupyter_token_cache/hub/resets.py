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

Resets are kept in this hub process only (the last :data:`KEEP` that ended, and every
one running); a hub restart forgets them, and the handle then answers 404. Asking for a
reset while the same one (same user, same revoke) runs returns the running one.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..times import iso8601
from ..tokens.service import TokenService

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
    #: Tokens revoked so far.
    revoked: int = 0
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
    """Start resets, keep their handles."""

    def __init__(
        self,
        service: TokenService,
        *,
        log: Any,
        ending: Callable[[str | None], Awaitable[None]] | None = None,
    ) -> None:
        self.service = service
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
        self._resets[reset.id] = reset
        reset.task = asyncio.get_running_loop().create_task(
            self._run(reset), name=f"token-cache-reset-{reset.id}"
        )
        return reset

    def get(self, reset_id: str) -> Reset | None:
        return self._resets.get(reset_id)

    async def _run(self, reset: Reset) -> None:
        def progress(count: int) -> None:
            reset.revoked = count

        upstream_ended = await self._end(reset)
        try:
            result = await self.service.reset(reset.user, revoke=reset.revoke, progress=progress)
            reset.cleared, reset.revoked = result["cleared"], result["revoked"]
            if not upstream_ended:
                reset.error = "The user's upstream session could not be ended; see the hub's log"
        except Exception:
            self.log.exception("Token cache reset %s failed", reset.id)
            reset.error = "The reset failed; see the hub's log"
        finally:
            reset.finished = time.time()
            ended = [r for r in self._resets.values() if r.finished is not None]
            for old in ended[: max(0, len(ended) - KEEP)]:
                del self._resets[old.id]

    async def _end(self, reset: Reset) -> bool:
        """End the user's (or everyone's) upstream session for a reset with revoke; False if
        that failed."""
        if self.ending is None or not reset.revoke:
            return True
        try:
            await self.ending(reset.user)
        except Exception:
            self.log.exception("Token cache reset %s: ending upstream sessions failed", reset.id)
            return False
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
