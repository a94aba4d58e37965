"""What a service knows of the hub's revocations: enough to tell stale cached answers.

Pure data and rules, no I/O: the event follower feeds it, the token checker asks it.

Notes
-----
Each active introspection answer carries ``last_event_id``, the hub's event stream
position when the answer was made. An answer is stale when an event *after* that
position ended its token (by id), changed its owner (by name), or reset everything;
an event before it says nothing, because the hub answered after it (and databases give
a deleted token's id to the next one, so "a123 was revoked" cannot be applied to
whatever holds a123 later). This makes the check exact across replicas sharing one
backend: an answer written by another replica is judged by this replica's events.

Records are kept only as long as an answer they could judge may live (the cache's
longest TTL), and at most ``max_records``; a record pushed out early raises the floor
below which every answer is stale, which is always safe.

When the stream is cut nothing more is learned, so answers are only trusted for
``disconnected_ttl`` after the cut (or after they were checked, if later) with
``on_disconnect = "keep"``, and not at all with ``"clear"`` (PingGateway's
CLEAR_ON_DISCONNECT): then every request asks the hub until the stream is back.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..cache.answers import CHECKED_AT
from ..tokens.events import CACHE_RESET, RESET, REVOKED, USER_CHANGED

KEEP = "keep"
CLEAR = "clear"
#: Verdicts on a cached answer.
USABLE = "usable"
ENDED = "ended"
STALE = "stale"


@dataclass(frozen=True, slots=True)
class Eviction:
    """What an event asks a cache to drop: some tokens, some users' answers, or everything."""

    reason: str
    token_ids: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    everything: bool = False


@dataclass
class RevocationState:
    """Event-stream positions of the ends this process has heard of, and the stream's health."""

    on_disconnect: str = KEEP
    disconnected_ttl: float = 30.0
    #: Seconds a record is kept: the longest an answer it could judge may be cached.
    remember: float = 300.0
    max_records: int = 100_000
    #: Answers made before this stream position are stale.
    floor: int = 0
    connected: bool = False
    #: Epoch seconds the stream was last cut (or this process started, before any stream).
    cut_at: float = field(default_factory=time.time)
    #: Id of the last event received, to resume from.
    last_event_id: str | None = None
    #: Seconds between the last event's publication at the hub and its arrival here.
    lag: float | None = None
    _tokens: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    _users: OrderedDict[str, tuple[int, float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the stream ---------------------------------------------------------------------

    def opened(self) -> None:
        """The stream is live again; what was missed has been replayed (or reset)."""
        with self._lock:
            self.connected = True

    def cut(self, now: float | None = None) -> bool:
        """The stream is gone; True when it had been live."""
        with self._lock:
            was, self.connected = self.connected, False
            if was:
                self.cut_at = time.time() if now is None else now
            return was

    def apply(self, event: Mapping[str, Any], now: float | None = None) -> Eviction | None:
        """Record one event from the stream; return what it asks caches to drop."""
        now = time.time() if now is None else now
        try:
            position = int(event["id"])
        except (KeyError, TypeError, ValueError):
            return None
        kind = event.get("type")
        with self._lock:
            self.last_event_id = str(position)
            published = event.get("time")
            if isinstance(published, (int, float)):
                self.lag = max(0.0, now - published)
            if kind == RESET or (kind == CACHE_RESET and not event.get("user")):
                self.floor = max(self.floor, position)
                self._tokens.clear()
                self._users.clear()
                return Eviction(str(kind), everything=True)
            ids: tuple[str, ...] = ()
            users: tuple[str, ...] = ()
            if kind == REVOKED:
                ids = tuple(str(i) for i in event.get("token_ids") or ())
                for token_id in ids:
                    self._note(self._tokens, token_id, position, now)
            elif kind in (USER_CHANGED, CACHE_RESET):
                users = tuple(str(u) for u in (event.get("user"), event.get("previous_name")) if u)
                for user in users:
                    self._note(self._users, user, position, now)
            else:
                return None
            reason = str(event.get("reason") or kind)
            return Eviction(reason, token_ids=ids, users=users)

    def _note(
        self, records: OrderedDict[str, tuple[int, float]], name: str, position: int, now: float
    ) -> None:
        records[name] = (position, now)
        records.move_to_end(name)
        while records:
            oldest, (at, received) = next(iter(records.items()))
            if received + self.remember > now and len(records) <= self.max_records:
                break
            del records[oldest]
            if received + self.remember > now:  # pushed out early: stale below it
                self.floor = max(self.floor, at)

    # -- judging answers ----------------------------------------------------------------

    def verdict(self, answer: Mapping[str, Any], now: float | None = None) -> str:
        """What may be done with a cached active answer: USABLE, ENDED or STALE.

        ENDED means an event after the answer ended this very token (it is keyed by the
        token, whose secret no later token shares): the caller may refuse it without
        asking the hub. STALE means the hub must be asked again.
        """
        now = time.time() if now is None else now
        position = answer.get("last_event_id")
        if not isinstance(position, int):
            return STALE
        token_id = answer.get("token_id")
        ended = self._tokens.get(token_id) if isinstance(token_id, str) else None
        if ended is not None and ended[0] > position:
            return ENDED
        user = answer.get("username")
        changed = self._users.get(user) if isinstance(user, str) else None
        if position < self.floor or (changed is not None and changed[0] > position):
            return STALE
        if self.connected:
            return USABLE
        if self.on_disconnect == CLEAR:
            return STALE
        trusted = max(self.cut_at, float(answer.get(CHECKED_AT, 0))) + self.disconnected_ttl
        return USABLE if now < trusted else STALE

    def usable(self, answer: Mapping[str, Any], now: float | None = None) -> bool:
        """Whether a cached active answer may still be served."""
        return self.verdict(answer, now) == USABLE

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "last_event_id": self.last_event_id,
            "floor": self.floor,
            "revoked_tokens": len(self._tokens),
            "changed_users": len(self._users),
        }
