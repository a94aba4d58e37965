"""The subcommands that call the hub: stats, tokens, reset, events."""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from traitlets import Bool, CaselessStrEnum, Float, Integer, Unicode

from ..tokens.stream import read_blocks
from .app import HubCommand
from .errors import FAILED, OK, UNREACHABLE, CommandError, warn
from .http import PAGINATION, Hub
from .output import visible

#: Most tokens one page of GET /token-cache/tokens holds (the hub's maximum).
PAGE = 200
#: Seconds between two looks at a reset that runs on, and between two progress lines.
RESET_POLL, RESET_PROGRESS = 0.5, 5.0
#: Seconds a reset's handle is followed while the hub does not answer (a restart: the
#: next hub goes on with the reset, under the same handle).
RESET_OUTAGE = 300.0
#: What the proxy answers while the hub behind it is down (404: a proxy started again,
#: before the hub has told it its routes).
_HUB_DOWN = (404, 502, 503, 504)


def table(headers: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> str:
    """Columns aligned with two spaces (a header row unless None); None shows as "-"."""
    cells = [[visible(h) for h in headers]] if headers else []
    cells += [["-" if v is None else visible(v) for v in row] for row in rows]
    if not cells:
        return ""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def when(value: Any) -> str | None:
    """An ISO 8601 time to the second, for a table."""
    if not isinstance(value, str):
        return None
    return value.split(".")[0].rstrip("Z") + "Z" if "T" in value else value


class StatsCommand(HubCommand):
    """GET /hub/api/token-cache/stats."""

    name = "jupyter-token-cache stats"
    description = """Counters of the hub's token cache since the hub started: hits,
    misses, mints, evictions, backend errors and health, per token kind, events and
    introspections. Needs admin:users or custom:token-cache:admin."""

    def run(self) -> int:
        with self.hub() as hub:
            stats = hub.get("token-cache/stats")
        if self.json_output:
            self.out(json.dumps(stats, indent=2, sort_keys=True))
            return OK
        scalars = [(k, v) for k, v in stats.items() if not isinstance(v, dict)]
        self.out(table(None, scalars))
        health = stats.get("health")
        if isinstance(health, dict):
            state = "available" if health.get("available") else "UNAVAILABLE"
            line = f"health: {state} since {visible(when(health.get('since')))}"
            if health.get("last_error"):
                line += (
                    f"; last error at {visible(when(health.get('last_error_at')))}: "
                    f"{visible(health['last_error'])}"
                )
            self.out(line)
        by_kind = stats.get("by_kind") or {}
        if by_kind:
            columns = sorted({c for counts in by_kind.values() for c in counts})
            rows = [
                [kind, *(counts.get(c, 0) for c in columns)] for kind, counts in by_kind.items()
            ]
            self.out()
            self.out(table(("kind", *columns), rows))
        for name, value in stats.items():
            if isinstance(value, dict) and name not in ("health", "by_kind"):
                self.out(
                    f"{visible(name)}: "
                    + ", ".join(f"{visible(k)} {visible(v)}" for k, v in value.items())
                )
        return OK


class TokensCommand(HubCommand):
    """GET /hub/api/token-cache/tokens, every page."""

    name = "jupyter-token-cache tokens"
    description = """The live tokens the cache minted, oldest first: id, owner, kind,
    service, the session they came from, expiry and last activity. Never the tokens
    themselves. Needs admin:users or custom:token-cache:admin."""

    user = Unicode("", config=True, help="Only this user's tokens.")
    kind = CaselessStrEnum(
        ["", "notebook", "internal"], "", config=True, help="Only notebook or internal tokens."
    )
    service = Unicode("", config=True, help="Only internal tokens for this service.")

    aliases = {
        **HubCommand.aliases,
        "user": "TokensCommand.user",
        "kind": "TokensCommand.kind",
        "service": "TokensCommand.service",
    }

    def run(self) -> int:
        filters = {"user": self.user, "kind": self.kind.lower(), "service": self.service}
        params = {k: v for k, v in filters.items() if v}
        items: list[dict[str, Any]] = []
        with self.hub() as hub:
            offset = 0
            while True:
                page = hub.get(
                    "token-cache/tokens",
                    params={**params, "offset": str(offset), "limit": str(PAGE)},
                    headers={"Accept": PAGINATION},
                )
                if isinstance(page, list):  # a hub that ignores the pagination header
                    items += page
                    break
                items += page["items"]
                following = (page.get("_pagination") or {}).get("next")
                if not following or following["offset"] <= offset:
                    break
                offset = following["offset"]
        if self.json_output:
            self.out(json.dumps(items, indent=2))
            return OK
        if not items:
            self.out("No tokens.")
            return OK
        headers = (
            "id",
            "user",
            "kind",
            "service",
            "session",
            "created",
            "expires",
            "last activity",
        )
        rows = [
            (
                t.get("id"),
                t.get("user"),
                t.get("kind"),
                t.get("service"),
                t.get("session_kind"),
                when(t.get("created")),
                when(t.get("expires_at")),
                when(t.get("last_activity")),
            )
            for t in items
        ]
        self.out(table(headers, rows))
        return OK


class ResetCommand(HubCommand):
    """DELETE /hub/api/token-cache[/users/{name}][?revoke=true], followed to its end."""

    name = "jupyter-token-cache reset"
    description = """Forget the cached tokens of every user (or of --user NAME), so the
    next requests mint new ones. With --revoke, also delete the tokens the cache minted
    from the hub: whoever holds one loses access at once. Asks before revoking unless
    -y. The hub revokes a batch at a time; the command follows the reset until it is
    done, with a line on stderr every few seconds. Needs admin:users or
    custom:token-cache:admin."""

    user = Unicode("", config=True, help="Only this user's tokens.")
    revoke = Bool(False, config=True, help="Also delete the minted tokens from the hub.")
    yes = Bool(False, config=True, help="Revoke without asking.")

    aliases = {**HubCommand.aliases, "user": "ResetCommand.user"}
    flags = {
        **HubCommand.flags,
        "revoke": (
            {"ResetCommand": {"revoke": True}},
            "Also delete the minted tokens from the hub.",
        ),
        "y": ({"ResetCommand": {"yes": True}}, "Revoke without asking."),
        "yes": ({"ResetCommand": {"yes": True}}, "Revoke without asking."),
    }

    def run(self) -> int:
        who = f"user {visible(self.user)}" if self.user else "every user"
        with self.hub() as hub:
            if self.revoke and not self.yes and not self._confirmed(who):
                warn("nothing done")
                return FAILED
            path = "token-cache"
            if self.user:
                path += "/users/" + urllib.parse.quote(self.user, safe="")
            result = hub.delete(
                path,
                params={"revoke": "true"} if self.revoke else None,
                headers={"Prefer": "respond-async"},
            )
            if "state" in result:  # the reset's handle (202): follow it
                result = self._follow(hub, result)
        if result.get("state") == "failed":
            raise CommandError(f"the reset failed: {result.get('error') or 'see the hub log'}")
        if self.json_output:
            self.out(json.dumps(result, indent=2))
        else:
            line = f"Forgot the cached tokens of {who}"
            if self.revoke:
                line += f"; revoked {result.get('revoked', 0)} token(s) in the hub"
            self.out(line + ".")
        if result.get("cleared") is False:
            warn("the cache backend could not be reached: entries cached there may remain")
            return FAILED
        return OK

    def _follow(self, hub: Hub, reset: dict[str, Any]) -> dict[str, Any]:
        """Look at a reset that runs on until it ends; say how far it got now and then.

        The hub records the reset, and a hub that stops or crashes goes on with it when
        it starts again, under the same handle: while the hub does not answer, the
        command waits for it (up to :data:`RESET_OUTAGE` seconds) instead of failing.
        """
        path = f"token-cache/resets/{urllib.parse.quote(str(reset['id']), safe='')}"
        said = time.monotonic()
        down: float | None = None
        while reset.get("state") == "running":
            time.sleep(RESET_POLL)
            try:
                reset = hub.get(path)
            except CommandError as e:
                if e.status != UNREACHABLE and (e.from_hub or e.http_status not in _HUB_DOWN):
                    raise
                why = e.message
                if e.status != UNREACHABLE:
                    why = f"the proxy answers {e.http_status}: the hub behind it is not up"
                if down is None:
                    down = time.monotonic()
                    warn(f"{why}; the reset goes on when the hub starts again: waiting")
                elif time.monotonic() - down > RESET_OUTAGE:
                    raise CommandError(
                        f"{why} for {RESET_OUTAGE:.0f} s; the reset {reset['id']} goes on "
                        "when the hub starts again (GET /hub/api/" + path + ")",
                        UNREACHABLE,
                    ) from None
                continue
            down = None
            if self.revoke and time.monotonic() - said >= RESET_PROGRESS:
                warn(f"revoking: {reset.get('revoked', 0):,} token(s) so far")
                said = time.monotonic()
        return reset

    def _confirmed(self, who: str) -> bool:
        """Ask on stderr, read the answer from stdin (EOF is no)."""
        print(
            f"Revoke every token the cache minted for {who}? Their holders lose access. [y/N] ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        return sys.stdin.readline().strip().lower() in ("y", "yes")


class EventsCommand(HubCommand):
    """GET /hub/api/token-cache/events (Server-Sent Events)."""

    name = "jupyter-token-cache events"
    description = """The token lifecycle events the hub has buffered (mints,
    revocations, expiries, resets, user changes), then stop; with --follow, keep
    printing new ones until interrupted, reconnecting (and resuming where it stopped)
    when the hub drops the stream or restarts. A "reset" line means the hub could not
    replay what was missed. Needs admin:users, custom:token-cache:admin or
    custom:token-cache:events."""

    follow = Bool(False, config=True, help="Keep printing new events until interrupted.")
    since = Integer(
        -1,
        config=True,
        help="""Print the events after this id (as a stream client's Last-Event-ID); by
        default every event the hub still buffers (TokenCache.event_buffer_size).""",
    )
    idle_timeout = Float(
        60.0,
        config=True,
        help="""With --follow, seconds of silence after which the stream counts as cut and
        is reconnected (the hub sends a heartbeat every TokenCache.event_heartbeat
        seconds, 5 by default).""",
    )
    reconnect_timeout = Float(
        60.0,
        config=True,
        help="""With --follow, seconds the hub may stay unreachable before the command
        gives up with status 3; until then it reconnects, resuming after the last event
        (or heartbeat) it printed.""",
    )

    aliases = {
        **HubCommand.aliases,
        "since": "EventsCommand.since",
        "idle-timeout": "EventsCommand.idle_timeout",
        "reconnect-timeout": "EventsCommand.reconnect_timeout",
    }

    flags = {
        **HubCommand.flags,
        "follow": ({"EventsCommand": {"follow": True}}, "Keep printing new events."),
        "f": ({"EventsCommand": {"follow": True}}, "Keep printing new events."),
    }

    def run(self) -> int:
        position = self.since if self.since >= 0 else None
        with self.hub() as hub:
            if not self.follow:
                self._read(hub, position, self.timeout)
                return OK
            unreachable_since: float | None = None
            delay = 0.1
            while True:
                try:
                    position = self._read(hub, position, self.idle_timeout)
                    unreachable_since, delay = None, 0.1  # the hub ended a live stream
                except _Progress as e:  # cut after it was live: resume at once
                    position, unreachable_since, delay = e.position, None, 0.1
                except CommandError as e:
                    if e.status != UNREACHABLE:
                        raise
                    now = time.monotonic()
                    unreachable_since = unreachable_since or now
                    if now - unreachable_since >= self.reconnect_timeout:
                        raise CommandError(
                            f"{e.message} (reconnecting for {self.reconnect_timeout:g} s)",
                            UNREACHABLE,
                        ) from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _read(self, hub: Hub, position: int | None, idle: float) -> int | None:
        """One stream: print its events; return the position it carried everything up to.

        Without --follow it stops at the end of the replay. A stream cut after it opened
        raises :class:`_Progress` (with the position reached) for the reconnect.
        """
        headers = {"Last-Event-ID": str(position)} if position is not None else None
        params = None if position is not None else {"replay": "all"}
        opened = False
        try:
            with hub.stream(
                "token-cache/events", read_timeout=idle, headers=headers, params=params
            ) as lines:
                for block in read_blocks(lines):
                    opened = True
                    if block.data is not None and not block.opening:
                        self.out(
                            json.dumps(block.data) if self.json_output else describe(block.data)
                        )
                    if not block.opening and block.position is not None:
                        position = block.position
                    if block.caught_up and not self.follow:
                        return position
        except CommandError as e:
            if opened and e.status == UNREACHABLE:
                raise _Progress(position) from None
            raise
        if not self.follow:
            raise CommandError("the hub ended the event stream before its replay", UNREACHABLE)
        return position


class _Progress(Exception):
    """A live stream was cut: where it had got to."""

    def __init__(self, position: int | None) -> None:
        super().__init__()
        self.position = position


def describe(event: dict[str, Any]) -> str:
    """One line for people: time, id, type, then what the event names."""
    stamp = event.get("time")
    shown = (
        datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(stamp, int | float)
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    parts = [shown, f"#{visible(event.get('id'))}", visible(event.get("type"))]
    for name, value in event.items():
        if name in ("id", "time", "type"):
            continue
        if isinstance(value, list):
            value = ",".join(map(visible, value)) or "-"
        parts.append(f"{visible(name)}={visible(value)}")
    return " ".join(parts)
