"""Following the hub's event stream from a service, in a thread of its own, resuming.

Notes
-----
The follower runs in a daemon thread with a blocking httpx client rather than on the
service's event loop: services check tokens from Tornado's loop, from JupyterHub's
``HubAuth`` background thread (its synchronous API), or from jupyter-server's loop, and
revocations must arrive whichever of them is busy. All it does with an event is update
a :class:`RevocationState` (a few dict operations under a lock) and hand the eviction
to a callback, which must be quick and thread-safe.

A stream that says nothing for ``idle_timeout`` (the hub sends a heartbeat every few
seconds) is considered cut, which is how a frozen hub (SIGSTOP) or a silent network
failure is noticed. Reconnects back off from 0.1 s to 2 s and resume with
``Last-Event-ID``; the hub replays what was missed, or sends ``reset`` when it cannot.
A follower that has no position yet (it just started) asks for the events of the last
``replay`` seconds — as long as an answer it may find cached can live — so that a
process restarted beside a shared cache trusts what the replay vouches for and asks
the hub about the rest (:mod:`jupyter_token_cache.tokens.trust`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx

from ..scopes import EVENTS_SCOPE
from ..tokens.stream import Block, read_blocks
from ..tokens.trust import Eviction, RevocationState


class EventFollower:
    """Read ``GET {api_url}/token-cache/events`` until closed, feeding ``state``."""

    def __init__(
        self,
        *,
        api_url: str,
        api_token: str,
        state: RevocationState,
        evict: Callable[[Eviction], None],
        idle_timeout: float,
        log: logging.Logger,
        verify: Any = True,
    ) -> None:
        self.url = api_url.rstrip("/") + "/token-cache/events"
        self._headers = {"Authorization": f"token {api_token}"}
        self.state = state
        self.evict = evict
        self.idle_timeout = idle_timeout
        self.log = log
        self._verify = verify
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: httpx.Response | None = None
        #: Set once the stream has been open at least once (or refused for good).
        self.first_attempt = threading.Event()
        #: Why the last attempt failed, for a start-up check to report.
        self.error: str | None = None
        #: Set when the hub refused the service's token (a missing scope, not an outage).
        self.refused = False
        self.connects = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="token-cache-events", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop following (the thread ends within a moment)."""
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: BLE001, S110 - closing from another thread may race
                pass
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        delay = 0.1
        timeout = httpx.Timeout(5.0, read=self.idle_timeout)
        with httpx.Client(timeout=timeout, verify=self._verify) as client:
            while not self._stop.is_set():
                if self._follow(client):
                    delay = 0.1
                if self.state.cut():
                    self.log.warning("Token event stream cut; reconnecting")
                self.first_attempt.set()
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)

    def _follow(self, client: httpx.Client) -> bool:
        """One connection; True when it was open (so the next one starts quickly)."""
        headers = dict(self._headers)
        params = {}
        if self.state.last_event_id is not None:
            headers["Last-Event-ID"] = self.state.last_event_id
        else:
            params["replay"] = f"{self.state.remember:g}"
        try:
            with client.stream("GET", self.url, headers=headers, params=params) as response:
                self._response = response
                if response.status_code != 200:
                    self.error = _refusal(response)
                    self.refused = response.status_code == 403
                    self.log.error("Cannot follow the hub's token events: %s", self.error)
                    self._stop.wait(5.0)  # a misconfiguration: do not hammer the hub
                    return False
                self.error, self.refused = None, False
                self.connects += 1
                for block in read_blocks(response.iter_lines()):
                    if self._stop.is_set():
                        break
                    self._take(block)
                return True
        except (httpx.HTTPError, OSError) as e:
            self.error = f"{type(e).__name__}: the hub's event stream is unreachable"
            return False
        except Exception:  # a bug must not end revocation silently: log, reconnect
            self.log.exception("Token event follower failed; reconnecting")
            return False
        finally:
            self._response = None

    def _take(self, block: Block) -> None:
        """Feed one block of the stream to the state (see :mod:`jupyter_token_cache.tokens.stream`)."""
        state = self.state
        state.heard()
        if block.opening:
            assert block.data is not None
            since = block.data.get("since")
            if isinstance(since, int):
                state.begin(
                    since,
                    heartbeat=_seconds(block.data.get("heartbeat")),
                    horizon=_seconds(block.data.get("horizon")),
                )
        elif block.data is not None:
            eviction = state.apply(block.data)
            if eviction is not None:
                self.evict(eviction)
        elif block.caught_up:
            state.caught_up(block.position)
            self.first_attempt.set()
        elif block.position is not None:  # a heartbeat
            state.moved(block.position)


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _refusal(response: httpx.Response) -> str:
    response.read()
    if response.status_code == 403:
        return (
            f"403 from {response.request.url.path}: the service's token needs {EVENTS_SCOPE} "
            "(add it to the service's role in c.JupyterHub.load_roles)"
        )
    return f"{response.status_code} from {response.request.url.path}"
