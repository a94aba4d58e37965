"""``events --follow`` never loses events silently: across a dropped stream and a hub restart."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..e2e.services import api_token
from ..hubprocess import HubProcess, running_hub
from .cli import SCRIPT, cli

pytestmark = pytest.mark.e2e

#: A stream client more than 5 events behind is dropped (and resumes from the buffer).
CONFIG = """
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.custom_scopes.update({"custom:token-cache:events": {"description": "Events"}})
c.JupyterHub.services.append({"name": "watcher", "api_token": "events-only-token-0123456789abcdef"})
c.JupyterHub.load_roles.append(
    {"name": "watcher", "scopes": ["custom:token-cache:events"], "services": ["watcher"]}
)
c.TokenCache.event_heartbeat = 0.5
c.TokenCache.event_queue_size = 5
c.TokenCache.event_buffer_size = 1000
"""
EVENTS_ONLY = "events-only-token-0123456789abcdef"


class Follower:
    """``jupyter-token-cache events --follow --json`` in the background; its lines in a queue."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own console script
            [str(SCRIPT), "events", "--follow", "--json", *args],
            env={**env, "PATH": str(Path(sys.executable).parent)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def until(self, done: Any, timeout: float = 30) -> list[dict[str, Any]]:
        """Read events until ``done(events)`` is true."""
        deadline = time.monotonic() + timeout
        while not done(self.events):
            assert time.monotonic() < deadline, f"not seen in time; got {self.events}"
            try:
                self.events.append(json.loads(self.lines.get(timeout=0.2)))
            except queue.Empty:
                assert self.process.poll() is None, self.process.stderr.read()  # type: ignore[union-attr]
        return self.events

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    with running_hub(tmp_path, CONFIG) as started:
        yield started


def env_of(hub: HubProcess, token: str) -> dict[str, str]:
    return {"JUPYTERHUB_API_URL": f"{hub.hub_url}/hub/api", "JUPYTERHUB_API_TOKEN": token}


def revoked_ids(events: list[dict[str, Any]]) -> list[str]:
    return [i for e in events if e["type"] == "token-revoked" for i in e["token_ids"]]


def test_a_dropped_stream_resumes_and_every_event_is_printed_once(hub: HubProcess) -> None:
    follower = Follower(env_of(hub, hub.service_token))
    try:
        follower.until(lambda _: True, timeout=1)  # opened
        ids = [api_token(hub, "alice")["id"] for _ in range(30)]
        with hub.admin(direct=True) as admin:  # 30 events at once: a client 5 behind is dropped
            assert admin.delete("users/alice").status_code == 204
        follower.until(lambda events: set(ids) <= set(revoked_ids(events)))
        with hub.admin(direct=True) as admin:
            dropped = admin.get("token-cache/stats").json()["events"]["dropped_subscribers"]
        assert dropped >= 1  # the stream was dropped, and resumed
        assert sorted(revoked_ids(follower.events)) == sorted(ids)  # each once
        assert not [e for e in follower.events if e["type"] == "reset"]  # nothing was lost
        assert follower.process.poll() is None
    finally:
        follower.stop()


def test_across_a_hub_restart_a_reset_line_then_new_events_and_3_when_gone(
    hub: HubProcess,
) -> None:
    follower = Follower(env_of(hub, hub.service_token), "--reconnect-timeout=120")
    try:
        before = api_token(hub, "bob")
        api_token(hub, "bob")  # kept: SQLite would give the deleted token's id to the next
        with hub.admin(direct=True) as admin:
            admin.delete(f"users/bob/tokens/{before['id']}")
        follower.until(lambda events: before["id"] in revoked_ids(events))
        hub.stop()
        hub.start()
        after = api_token(hub, "bob")
        assert after["id"] != before["id"]
        with hub.admin(direct=True) as admin:
            admin.delete(f"users/bob/tokens/{after['id']}")
        events = follower.until(lambda events: after["id"] in revoked_ids(events))
        resets = [i for i, e in enumerate(events) if e["type"] == "reset"]
        revoked = [i for i, e in enumerate(events) if after["id"] in e.get("token_ids", ())]
        # the new hub cannot replay what happened while it was down: it says so, first
        assert len(resets) == 1 and resets[0] < revoked[0]
        assert revoked_ids(events).count(before["id"]) == 1
        assert follower.process.poll() is None
        impatient = Follower(env_of(hub, hub.service_token), "--reconnect-timeout=3")
        time.sleep(1)  # connected
        started = time.monotonic()
        hub.stop()  # gone for good: status 3 after --reconnect-timeout
        assert impatient.process.wait(30) == 3
        assert 3 <= time.monotonic() - started < 15
        assert "cannot reach the hub" in impatient.process.stderr.read()  # type: ignore[union-attr]
    finally:
        follower.stop()


def test_an_events_only_token_gets_the_buffered_events(hub: HubProcess) -> None:
    minted = api_token(hub, "carol")
    with hub.admin(direct=True) as admin:
        admin.delete(f"users/carol/tokens/{minted['id']}")
    result = cli("events", "--json", env=env_of(hub, EVENTS_ONLY))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert minted["id"] in revoked_ids(events)
    assert [e["type"] for e in events if e["type"] == "reset"] == []
    with httpx.Client() as client:  # the token may not read stats: the command never needed to
        r = client.get(f"{hub.hub_url}/hub/api/token-cache/stats",
                       headers={"Authorization": f"token {EVENTS_ONLY}"})  # fmt: skip
        assert r.status_code == 403
