"""Stream positions: the unit of trust of every answer about a token cached outside the hub.

Notes
-----
The invariant, in one place (the hub's event broker, the services' token checks and the
replicas' edge caches all import it from here):

    A cached answer is as fresh as the stream position that vouched for it. A process
    may trust an answer only if it has seen every event since that answer's position;
    an event ends an answer only if the answer is older than the event.

Positions are the ids of the hub's event stream. They are time-based — an event's id is
``max(previous id + 1, the microsecond it was published)`` — so they keep increasing
across hub restarts, the current position of a quiet hub still moves with the clock, and
"every event of the last five minutes" is a position a fresh follower can ask for.
:meth:`EventHistory.position` is the hub's position *now*: an answer made by the hub
carries it, and every event published afterwards has a larger id.

On the hub's side, :class:`EventHistory` keeps the last events and knows the position
from which it is complete (``complete_from``: the broker's start, raised whenever the
bounded buffer lets an event go). A stream opens with the position from which it
vouches for its history (``since``): the follower's own position when the buffer still
covers it, else the oldest position it can — and then it says events were lost.

On a follower's side, :class:`RevocationState` keeps that ``floor`` (answers vouched for
below it are *stale*: asked of the hub again, never trusted), the events it has seen
since (token ends by id; changes by user, group or service) and the stream's health.
Before its first stream opens a follower trusts nothing cached (with one exception: a
process told not to follow events at all trusts an answer for ``disconnected_ttl`` after
the hub gave it, as ``HubAuth`` trusts its own cache). While the stream is cut it keeps
answers for ``disconnected_ttl`` (``on_disconnect = "keep"``) or trusts nothing
(``"clear"``).

Threats this answers (docs/revocation.md has the whole model): a process restarted, or
new, beside a shared cache written before a revocation (its floor is where its history
starts); a hub restarted, or a token deleted while the hub was down (the new hub's
history starts at its start: everything older is stale); a late event for an id the
database has since given to another token (the newer answer is younger than the event);
a stream that drops events (the reconnect says so and raises the floor).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..times import parse_iso8601
from .events import (
    CACHE_RESET,
    GROUP_CHANGED,
    RESET,
    REVOKED,
    SCOPES_CHANGED,
    SERVICE_CHANGED,
    USER_CHANGED,
    Event,
)

#: Positions are microseconds since the epoch (at least).
PER_SECOND = 1_000_000


def position_at(epoch: float) -> int:
    """The stream position of a moment: every event published from then on has a larger id."""
    return int(epoch * PER_SECOND)


# -- the hub's side -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opening:
    """What a new stream connection is told before it follows live events."""

    #: The position from which this connection's history is complete.
    since: int
    #: Events after ``since`` that the subscriber has not seen, oldest first.
    replay: list[Event]
    #: The hub's position once the replay is through.
    position: int
    #: True when the subscriber asked for history the hub no longer has (or never had).
    lost: bool


class EventHistory:
    """The hub's last events, numbered by position, and where their completeness begins."""

    def __init__(self, size: int, *, now: float | None = None) -> None:
        self._buffer: deque[Event] = deque()
        self._size = max(1, size)
        #: Below this position the history is incomplete: events before the hub started,
        #: or pushed out of the buffer.
        self.complete_from = position_at(time.time() if now is None else now)
        self.last = self.complete_from

    def __len__(self) -> int:
        return len(self._buffer)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._buffer)

    def position(self, now: float | None = None) -> int:
        """The hub's position now: an answer made now is vouched for at it."""
        self.last = max(self.last, position_at(time.time() if now is None else now))
        return self.last

    def append(self, event: Event, now: float | None = None) -> Event:
        """Number ``event`` (a position above every answer given so far) and keep it."""
        now = time.time() if now is None else now
        self.last = max(self.last + 1, position_at(now))
        numbered = replace(event, id=self.last, time=now)
        if len(self._buffer) >= self._size:
            self.complete_from = self._buffer.popleft().id
        self._buffer.append(numbered)
        return numbered

    def opening(
        self, after: int | None = None, *, replay: float | None = None, now: float | None = None
    ) -> Opening:
        """What a subscriber resuming after position ``after`` — or, new, asking for the last
        ``replay`` seconds — is sent first; neither: no history, from now on."""
        now = time.time() if now is None else now
        position = self.position(now)
        if after is not None:
            wanted, lost = after, after < self.complete_from or after > position
        elif replay is not None:
            wanted, lost = position_at(max(0.0, now - max(0.0, replay))), False
        else:
            wanted, lost = position, False
        since = min(max(wanted, self.complete_from), position)
        events = [event for event in self._buffer if event.id > since]
        return Opening(since=since, replay=events, position=position, lost=lost)


# -- a follower's side --------------------------------------------------------------------

KEEP = "keep"
CLEAR = "clear"
#: Verdicts on a cached answer.
USABLE = "usable"
ENDED = "ended"
STALE = "stale"


@dataclass(frozen=True, slots=True)
class Eviction:
    """What an event asks a cache to drop: some tokens, some principals' answers, or everything.

    ``position`` is the event's: an entry vouched for at or after it is not concerned.
    Principals are ``user:<name>``, ``group:<name>`` or ``service:<name>``.
    """

    reason: str
    position: int = 0
    token_ids: tuple[str, ...] = ()
    #: When each ended token's row was created (epoch seconds; None: not said).
    created: tuple[float | None, ...] = ()
    principals: tuple[str, ...] = ()
    everything: bool = False

    def ends(self, token_id: str, issued_at: Any, vouched: int) -> bool:
        """Whether this eviction ends an answer about ``token_id`` issued at ``issued_at``
        (the answer's ``iat``) and vouched for at ``vouched``."""
        if vouched >= self.position:
            return False
        created = self.created or (None,) * len(self.token_ids)
        return any(
            name == token_id and same_row(when, issued_at)
            for name, when in zip(self.token_ids, created, strict=True)
        )


def same_row(created: float | None, issued_at: Any) -> bool:
    """Whether a row created at ``created`` may be the token an answer says was issued at
    ``issued_at`` (whole seconds, as introspection writes ``iat``); unknown either way: yes."""
    if created is None or not isinstance(issued_at, (int, float)):
        return True
    return int(created) == int(issued_at)


def created_of(event: Mapping[str, Any]) -> float | None:
    """An event's ``created`` as epoch seconds (None when absent or unreadable)."""
    created = event.get("created")
    if not isinstance(created, str):
        return None
    try:
        return parse_iso8601(created).timestamp()
    except ValueError:
        return None


def principals(answer: Mapping[str, Any]) -> Iterator[str]:
    """Whose changes can make ``answer`` wrong: its owner and, for a user, their groups."""
    owner = answer.get("username")
    if isinstance(owner, str):
        kind = "service" if answer.get("owner_kind") == "service" else "user"
        yield f"{kind}:{owner}"
    groups = answer.get("groups")
    if isinstance(groups, list):
        for group in groups:
            if isinstance(group, str):
                yield f"group:{group}"


def _event_principals(event: Mapping[str, Any]) -> tuple[str, ...]:
    kind = event.get("type")
    names: tuple[Any, ...]
    if kind == GROUP_CHANGED:
        names, prefix = (event.get("group"), event.get("previous_name")), "group:"
    elif kind == SERVICE_CHANGED:
        names, prefix = (event.get("service"),), "service:"
    else:  # user-changed, a user's cache-reset
        names, prefix = (event.get("user"), event.get("previous_name")), "user:"
    return tuple(f"{prefix}{name}" for name in names if isinstance(name, str) and name)


#: Events after which nothing vouched for before them can be trusted.
_EVERYTHING = (RESET, SCOPES_CHANGED)
_CHANGES = (USER_CHANGED, GROUP_CHANGED, SERVICE_CHANGED, CACHE_RESET)


@dataclass
class RevocationState:
    """Where this process stands in the hub's event stream, and the ends it has heard of."""

    on_disconnect: str = KEEP
    disconnected_ttl: float = 30.0
    #: Seconds a record is kept: the longest an answer it could judge may be cached.
    remember: float = 300.0
    max_records: int = 100_000
    #: False for a process told not to follow the stream (answers then live on time alone).
    follows: bool = True
    #: Answers vouched for before this position are stale. None: no stream opened yet.
    floor: int | None = None
    connected: bool = False
    #: Epoch seconds the stream was last cut (None: it has never been live).
    cut_at: float | None = None
    #: The position this process's history is complete up to (what it resumes from).
    position: int | None = None
    #: Seconds between the last event's publication at the hub and its arrival here.
    lag: float | None = None
    #: Events the hub said were lost to this process (resets it was sent).
    resets: int = 0
    #: Seconds between the hub's heartbeats on an idle stream (its ``open`` event says).
    heartbeat: float | None = None
    #: Longest (seconds) an answer may be trusted after the hub gave it (the hub watches
    #: the tokens it described for that long; its ``open`` event says).
    horizon: float | None = None
    #: Epoch seconds the last block of the stream arrived.
    heard_at: float = 0.0
    #: token id -> (position of its end, when heard, its row's creation or None)
    _tokens: OrderedDict[str, tuple[int, float, float | None]] = field(default_factory=OrderedDict)
    _principals: OrderedDict[str, tuple[int, float, float | None]] = field(
        default_factory=OrderedDict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: The silence (by when it began) a request already waited through.
    _waited_for: float | None = None

    @property
    def last_event_id(self) -> str | None:
        """The ``Last-Event-ID`` to resume with (None: ask for a replay instead)."""
        return None if self.position is None else str(self.position)

    # -- the stream ---------------------------------------------------------------------

    def heard(self, now: float | None = None) -> None:
        """A block of the stream arrived (an event, a heartbeat): the stream is current."""
        self.heard_at = time.time() if now is None else now

    def behind(self, now: float | None = None) -> bool:
        """True while a live stream has said nothing for longer than two heartbeats.

        Then this process may have missed what the hub sent: the hub is frozen, the
        network stalled, or this very process was frozen (SIGSTOP) or starved and has
        not read what waits in its socket yet. Its answers are judged as during a cut.
        """
        if not self.connected or not self.heartbeat:
            return False
        return (time.time() if now is None else now) > self.heard_at + self._tolerance()

    def _tolerance(self) -> float:
        return 2 * (self.heartbeat or 0.0) + 0.5

    async def catch_up(self, wait: float = 1.0) -> None:
        """When :meth:`behind`, give the follower up to ``wait`` seconds (at most a
        heartbeat) to read what may be waiting for it — after a freeze of this process,
        the events sent meanwhile — before an answer is judged.

        Once per silence: when nothing arrived in that time, the hub (or the network) is
        the silent one, and later requests are judged at once, as during a cut.
        """
        silent_since = self.heard_at
        if not self.behind() or self._waited_for == silent_since:
            return
        deadline = time.monotonic() + min(wait, self.heartbeat or wait)
        while self.behind() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self._waited_for = silent_since

    def begin(
        self, since: int, *, heartbeat: float | None = None, horizon: float | None = None
    ) -> None:
        """A stream opens whose history is complete from ``since`` (its replay follows).

        A fresh process starts its floor there; a resuming one only when the hub could not
        replay from where it stood (events were lost: a ``reset`` follows too).
        """
        with self._lock:
            self.heartbeat = heartbeat or self.heartbeat
            self.horizon = horizon or self.horizon
            if self.position is None or since > self.position:
                self.floor = since if self.floor is None else max(self.floor, since)

    def caught_up(self, position: int | None = None) -> None:
        """The replay is through and the hub was at ``position`` when it began: the stream
        is live. A hub that sent no opening (an older version) vouches for nothing before
        now: without a floor, every answer stays stale."""
        with self._lock:
            if position is not None and (self.position is None or position > self.position):
                self.position = position
            self.connected = True

    def cut(self, now: float | None = None) -> bool:
        """The stream is gone; True when it had been live."""
        with self._lock:
            was, self.connected = self.connected, False
            if was:
                self.cut_at = time.time() if now is None else now
            return was

    def moved(self, position: int) -> None:
        """The hub says this stream has carried every event up to ``position`` (a heartbeat)."""
        with self._lock:
            if self.position is None or position > self.position:
                self.position = position

    def apply(self, event: Mapping[str, Any], now: float | None = None) -> Eviction | None:
        """Record one event from the stream; return what it asks caches to drop."""
        now = time.time() if now is None else now
        try:
            position = int(event["id"])
        except (KeyError, TypeError, ValueError):
            return None
        kind = event.get("type")
        with self._lock:
            self.position = max(self.position or 0, position)
            published = event.get("time")
            if isinstance(published, (int, float)):
                self.lag = max(0.0, now - published)
            if kind in _EVERYTHING or (kind == CACHE_RESET and not event.get("user")):
                self.resets += kind == RESET
                self.floor = position if self.floor is None else max(self.floor, position)
                self._tokens.clear()
                self._principals.clear()
                return Eviction(str(kind), position, everything=True)
            if kind == REVOKED:
                ids = tuple(str(i) for i in event.get("token_ids") or ())
                created = created_of(event) if len(ids) == 1 else None
                for token_id in ids:
                    self._note(self._tokens, token_id, position, now, created)
                reason = str(event.get("reason") or kind)
                return Eviction(reason, position, token_ids=ids, created=(created,) * len(ids))
            if kind in _CHANGES:
                names = _event_principals(event)
                for name in names:
                    self._note(self._principals, name, position, now)
                return Eviction(str(event.get("reason") or kind), position, principals=names)
            return None

    def _note(
        self,
        records: OrderedDict[str, tuple[int, float, float | None]],
        name: str,
        position: int,
        now: float,
        created: float | None = None,
    ) -> None:
        records[name] = (position, now, created)
        records.move_to_end(name)
        while records:
            oldest, (at, received, _) = next(iter(records.items()))
            if received + self.remember > now and len(records) <= self.max_records:
                break
            del records[oldest]
            if received + self.remember > now:  # pushed out early: stale below it
                self.floor = at if self.floor is None else max(self.floor, at)

    # -- judging answers ----------------------------------------------------------------

    def verdict(self, answer: Mapping[str, Any], now: float | None = None) -> str:
        """What may be done with a cached active answer: USABLE, ENDED or STALE.

        ``answer`` holds ``last_event_id`` (the position that vouched for it),
        ``token_id``, ``iat``, ``username``, ``owner_kind``, ``groups`` and
        ``checked_at``. ENDED means an event younger than the answer ended this very
        token — the same id, and, when the event says when its row was created, the same
        row (the answer is keyed by the token, whose secret no later token shares): it may
        be refused without asking the hub. STALE means the hub must be asked again.
        """
        now = time.time() if now is None else now
        position = answer.get("last_event_id")
        if not isinstance(position, int) or isinstance(position, bool):
            return STALE
        with self._lock:
            token_id = answer.get("token_id")
            ended = self._tokens.get(token_id) if isinstance(token_id, str) else None
            if ended is not None and ended[0] > position:
                if same_row(ended[2], answer.get("iat")):
                    return ENDED
                # another row held this id when it ended: the answer's token lives on
            for name in principals(answer):
                changed = self._principals.get(name)
                if changed is not None and changed[0] > position:
                    return STALE
            floor, connected, cut_at = self.floor, self.connected, self.cut_at
        if connected and self.behind(now):  # silent too long: as if cut when it fell silent
            connected, cut_at = False, self.heard_at + self._tolerance()
        checked = answer.get("checked_at", 0)
        checked = float(checked) if isinstance(checked, (int, float)) else 0.0
        if not self.follows:  # no history at all: a hub answer lives disconnected_ttl
            return USABLE if now < checked + self.disconnected_ttl else STALE
        if self.horizon is not None and now > checked + self.horizon:
            return STALE  # the hub no longer watches its token: ask again
        if floor is None or position < floor:
            return STALE
        if connected:
            return USABLE
        if cut_at is None or self.on_disconnect == CLEAR:  # not caught up yet, or "clear"
            return STALE
        return USABLE if now < max(cut_at, checked) + self.disconnected_ttl else STALE

    def usable(self, answer: Mapping[str, Any], now: float | None = None) -> bool:
        """Whether a cached active answer may still be served."""
        return self.verdict(answer, now) == USABLE

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "last_event_id": self.last_event_id,
            "floor": self.floor,
            "resets": self.resets,
            "revoked_tokens": len(self._tokens),
            "changed_principals": len(self._principals),
        }
