"""The event stream's wire format (text/event-stream), written by the hub and read by followers.

Notes
-----
One module for both directions, so that what the hub writes and what services, replicas
and the command line read cannot drift apart. A stream is, in order:

1. an ``open`` event: ``since`` (the position from which the stream vouches for its
   history), ``position`` (the hub's, when the stream opened), ``heartbeat`` (the
   seconds between heartbeats: a follower that hears nothing for longer knows it may be
   behind) and ``horizon`` (the longest a follower may trust an answer the hub gave it:
   the hub watches the tokens it described for that long); its ``id`` is ``since``;
2. the replay: a ``reset`` first when the subscriber's position is no longer covered, then
   every buffered event after ``since``;
3. a block with a ``retry`` field and the hub's position as ``id``: the replay is over;
4. live events, and, when idle, heartbeats: a comment and the hub's position as ``id``
   (every event up to it has been sent).

An ``id`` without ``data`` is a position and nothing else (a browser's EventSource
records it as its last event id without dispatching anything), so generic SSE clients
resume correctly too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .events import OPEN, Event
from .trust import Opening


def sse(event: Event) -> str:
    """One event in text/event-stream framing."""
    return f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(event.model())}\n\n"


def sse_open(opening: Opening, *, heartbeat: float, horizon: float) -> str:
    """The block every stream starts with: from where its history is vouched for."""
    data = {
        "type": OPEN,
        "since": opening.since,
        "position": opening.position,
        "heartbeat": heartbeat,
        "horizon": horizon,
    }
    return f"id: {opening.since}\nevent: {OPEN}\ndata: {json.dumps(data)}\n\n"


def sse_caught_up(position: int) -> str:
    """The block after the replay: a ``retry`` field, and the hub's position as ``id``."""
    return f"id: {position}\nretry: 1000\n\n"


def sse_heartbeat(position: int) -> str:
    """An idle stream's heartbeat: a comment, and the position it has carried everything up to."""
    return f": heartbeat\nid: {position}\n\n"


@dataclass(frozen=True, slots=True)
class Block:
    """One block of a stream: its event type, id and JSON data, and whether it had ``retry``."""

    event: str | None = None
    id: str | None = None
    data: dict[str, Any] | None = None
    retry: bool = False

    @property
    def position(self) -> int | None:
        """The block's id as a stream position (None when it has none, or not a number)."""
        if self.id is None:
            return None
        try:
            return int(self.id)
        except ValueError:
            return None

    @property
    def caught_up(self) -> bool:
        """The block that ends a stream's replay."""
        return self.retry and self.data is None

    @property
    def opening(self) -> bool:
        return self.event == OPEN and self.data is not None


def read_blocks(lines: Iterator[str]) -> Iterator[Block]:
    """Parse text/event-stream lines into blocks; comments and empty blocks are skipped.

    A block whose data is not a JSON object is passed on without data (its id still counts).
    """
    data: list[str] = []
    event = ident = None
    retry = False
    for line in lines:
        if line.startswith(":"):
            continue
        if line == "":
            if data or ident is not None or retry:
                parsed: Any = None
                if data:
                    try:
                        parsed = json.loads("\n".join(data))
                    except (ValueError, RecursionError):  # not JSON, or nested too deep
                        parsed = None
                yield Block(event, ident, parsed if isinstance(parsed, dict) else None, retry)
            data, event, ident, retry = [], None, None, False
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            ident = value
        elif name == "retry":
            retry = True
