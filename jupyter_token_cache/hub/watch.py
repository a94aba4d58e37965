"""Tokens the hub described to caches outside it, watched until those caches must ask again.

Notes
-----
A service or replica caches the hub's introspection answers and drops one when the
event stream says its token ended. Most ends are seen where they happen (the database
observer), but a token row deleted where the hub's database session cannot see it —
raw SQL, another process, a restored backup — ends without an event, and a cache would
go on trusting its answer for as long as it keeps it. So the hub remembers which rows it
vouched for (id and fingerprint: ids are reused) for ``answer_horizon`` seconds — the
longest any follower may trust an answer, which the stream tells them — and at each
sweep looks for those rows, a few hundred ids per query, yielding to the event loop
between queries. A row that is gone is reported as revoked ("deleted"), with when it was
created, so that a consumer never takes the event for the row that received its id; a
row the observer saw end is let go at once (its event is out already).

The watch list is bounded (``watched_tokens``): when it must let a row go before its
horizon, it can no longer vouch for what caches hold about it, and the next check
publishes one ``scopes-changed`` event ("unwatched") that makes every cache ask again.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from jupyterhub import orm
from sqlalchemy import select

from ..times import epoch_seconds, iso8601
from ..tokens.events import REVOKED, SCOPES_CHANGED, Event
from .lineage import fingerprint

#: Rows looked up per query (well under every database's bound-parameter limit).
BATCH = 500


class WatchedTokens:
    """Token rows described to outside caches: (row id, fingerprint) -> when to stop watching."""

    def __init__(
        self, *, horizon: float, size: int, publish: Callable[[Iterable[Event]], None]
    ) -> None:
        self.horizon = horizon
        self.size = size
        self.publish = publish
        #: (row id, fingerprint) -> (until when it is watched, when the row was created)
        self._rows: OrderedDict[tuple[int, str], tuple[float, float | None]] = OrderedDict()
        self._let_go = False
        #: Counters for the stats route.
        self.counts = {"watched": 0, "vanished": 0, "let_go": 0}

    def __len__(self) -> int:
        return len(self._rows)

    def described(self, orm_token: Any, now: float | None = None) -> None:
        """The hub just described ``orm_token`` to a cache."""
        key = (orm_token.id, fingerprint(orm_token.hashed))
        until = (time.time() if now is None else now) + self.horizon
        self._rows[key] = (until, epoch_seconds(orm_token.created))
        self._rows.move_to_end(key)
        if len(self._rows) > self.size:
            self._rows.popitem(last=False)
            self._let_go = True
            self.counts["let_go"] += 1

    def forget(self, row_id: int, fp: str) -> None:
        """A watched row ended where the observer saw it: its event is out already.

        Reporting it again later, by id, could end the answers of the row that received
        its id meanwhile (its event names its creation, but a consumer that cannot tell
        rows apart would act on the id).
        """
        self._rows.pop((row_id, fp), None)

    async def check(self, db: Any, now: float | None = None) -> int:
        """Report the watched rows that are gone; forget those past their horizon."""
        now = time.time() if now is None else now
        if self._let_go:
            self._let_go = False
            self.publish([Event(SCOPES_CHANGED, reason="unwatched")])
        while self._rows:  # the oldest first: the front is what has run out
            key, (until, _) = next(iter(self._rows.items()))
            if until > now:
                break
            del self._rows[key]
        self.counts["watched"] = len(self._rows)
        vanished = 0
        keys = list(self._rows)
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            ids = {row_id for row_id, _ in batch}
            query = select(orm.APIToken.id, orm.APIToken.hashed).where(orm.APIToken.id.in_(ids))
            live = {(row.id, fingerprint(row.hashed)) for row in db.execute(query)}
            gone = [(key, self._rows.pop(key, (0.0, None))[1]) for key in batch if key not in live]
            if gone:
                vanished += len(gone)
                self.publish(
                    Event(REVOKED, token_ids=(f"a{key[0]}",), reason="deleted", created=iso8601(at))
                    for key, at in gone
                )
            await asyncio.sleep(0)  # the loop serves requests between batches
        self.counts["vanished"] += vanished
        return vanished
