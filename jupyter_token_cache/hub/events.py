"""The hub's event broker: a bounded buffer, per-subscriber queues, the audit log and Redis.

Notes
-----
Events are numbered by stream position (:mod:`jupyter_token_cache.tokens.trust`: the
microsecond they are published, at least one above the last), so ids keep increasing
across hub restarts, and a client resuming with an id from before a restart, or from
before what the buffer still holds, is told to ``reset`` rather than silently skipping
what it missed. Every stream opens by saying from which position it vouches for its
history and where the hub stands; heartbeats carry the hub's position too, so a follower
of a quiet hub still knows it has missed nothing up to now.

Publishing never waits: each stream subscriber has a bounded queue, and one that falls
that far behind is dropped (its connection closed); it resumes with ``Last-Event-ID``
from the buffer, or gets ``reset`` when its id has left the buffer. A slow consumer
therefore costs the hub one failed ``put_nowait``, never a wait.

The same events go to JupyterHub's event logging (``jupyter_events``, with the schema
``event-schemas/token-event/v1.yaml`` registered here), which operators route with
``c.EventLogger.handlers``, and, when the cache backend is Redis, Fernet-sealed to the
``{namespace}:events`` channel for every process sharing that Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..cache import CacheEngine
from ..tokens.events import RESET, Event
from ..tokens.trust import EventHistory, Opening

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "event-schemas" / "token-event" / "v1.yaml"
SCHEMA_ID = "https://schema.jupyter.org/jupyter-token-cache/token-event"
#: Events waiting to go to Redis at most; beyond, the oldest are dropped (and counted).
_OUTBOX = 10_000


@dataclass(eq=False)
class Subscription:
    """One stream client: how its stream opens (``opening``) and what comes next (``queue``)."""

    opening: Opening
    queue: asyncio.Queue[Event | None]
    #: Set when it fell too far behind or the broker closed: the stream must end.
    dropped: bool = False
    since: float = field(default_factory=time.monotonic)


class EventBroker:
    """Number, keep and deliver lifecycle events."""

    def __init__(
        self,
        *,
        buffer_size: int,
        queue_size: int,
        eventlog: Any = None,
        cache: CacheEngine | None = None,
        log: Any,
    ) -> None:
        self.log = log
        self.queue_size = queue_size
        self._history = EventHistory(buffer_size)
        self._subscribers: set[Subscription] = set()
        self._eventlog = eventlog
        self._cache = cache
        self._outbox: deque[dict[str, Any]] = deque(maxlen=_OUTBOX)
        self._forwarder: asyncio.Task[None] | None = None
        #: Counters for the stats route.
        self.counts = {"published": 0, "dropped_subscribers": 0, "redis_failed": 0}
        if eventlog is not None:
            register_schema(eventlog)

    @property
    def last_id(self) -> int:
        """The id of the last event published (or the broker's start position)."""
        return self._history.last

    def position(self) -> int:
        """The stream's position now: an answer made now is vouched for at it."""
        return self._history.position()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def stats(self) -> dict[str, int]:
        """What the admin stats route shows about the stream."""
        return {
            "last_id": self._history.last,
            "complete_from": self._history.complete_from,
            "buffered": len(self._history),
            "subscribers": len(self._subscribers),
            **self.counts,
        }

    def publish(self, events: Iterable[Event]) -> None:
        """Number and deliver ``events``; never blocks, never raises."""
        for event in events:
            event = self._history.append(event)
            self.counts["published"] += 1
            for sub in list(self._subscribers):
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    self._drop(sub)
            model = event.model()
            if self._eventlog is not None:
                try:
                    self._eventlog.emit(schema_id=SCHEMA_ID, data=model)
                except Exception as e:  # noqa: BLE001 - auditing must not break a delete
                    self.log.error("Token cache event not logged: %s", e)
            if self._forwards():
                self._outbox.append(model)

    # -- subscribers ----------------------------------------------------------------------

    def subscribe(self, last_event_id: str | None, replay: float | None = None) -> Subscription:
        """A new subscriber, resuming after ``last_event_id`` or, new, replaying ``replay`` seconds.

        An id that is not a number, from before what the buffer holds (or before this hub
        started) or from the future gets a ``reset`` at the top of its replay.
        """
        after: int | None = None
        if last_event_id is not None:
            try:
                after = int(last_event_id.strip())
            except ValueError:
                after = -1
        opening = self._history.opening(after, replay=replay)
        if opening.lost:
            reset = Event(RESET, id=opening.since, time=time.time())
            opening = replace(opening, replay=[reset, *opening.replay])
        sub = Subscription(opening=opening, queue=asyncio.Queue(self.queue_size))
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def end(self, sub: Subscription) -> None:
        """End one stream (its client went away): it stops at its next turn."""
        sub.dropped = True
        self._subscribers.discard(sub)
        _wake(sub)

    def _drop(self, sub: Subscription) -> None:
        sub.dropped = True
        self._subscribers.discard(sub)
        self.counts["dropped_subscribers"] += 1
        self.log.warning("Dropped a token-cache event subscriber that fell behind; it can resume")
        _wake(sub)

    def close(self) -> None:
        """End every stream (hub shutdown) and stop forwarding."""
        for sub in list(self._subscribers):
            sub.dropped = True
            _wake(sub)
        self._subscribers.clear()
        if self._forwarder is not None:
            self._forwarder.cancel()

    # -- Redis ----------------------------------------------------------------------------

    def _forwards(self) -> bool:
        """True when events go to Redis; starts a forwarder if none is running."""
        if self._cache is None or self._cache.backend != "redis":
            return False
        if self._forwarder is None or self._forwarder.done():
            try:
                self._forwarder = asyncio.get_running_loop().create_task(self._forward())
            except RuntimeError:
                return False
        return True

    async def _forward(self) -> None:
        """Send the outbox to Redis in order, one event at a time (fail-open, as the cache).

        The task ends when the outbox is empty and the next event starts another: no task
        lingers between bursts, so none can hold up a shutdown.
        """
        assert self._cache is not None
        await asyncio.sleep(0)  # let the publishing commit finish its batch first
        while self._outbox:
            model = self._outbox.popleft()
            if not await self._cache.store.announce("events", model):
                self.counts["redis_failed"] += 1


def _wake(sub: Subscription) -> None:
    try:
        sub.queue.put_nowait(None)
    except asyncio.QueueFull:
        pass  # it is full of events: the stream reads them, then sees ``dropped``


def register_schema(eventlog: Any) -> None:
    """Register the token-event schema with a jupyter_events EventLogger (once)."""
    if SCHEMA_ID not in getattr(eventlog.schemas, "schema_ids", ()):
        eventlog.register_event_schema(SCHEMA_PATH)
