"""End to end: the event stream cut by a frozen (SIGSTOP) or killed (SIGKILL) hub."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..hubprocess import HubProcess
from ..servers import MissingBinary, unavailable
from ..times import until
from .services import ExternalService, api_token, external, services_hub

pytestmark = pytest.mark.e2e
#: Cuts are noticed after 2 s of silence (the hub's heartbeat is 0.5 s); answers kept 3 s.
SETTINGS = ["--CachedHubAuth.stream_timeout=2", "--CachedHubAuth.disconnected_ttl=3",
            "--CachedHubAuth.check_timeout=2"]  # fmt: skip


@pytest.fixture
def cut(tmp_path: Path) -> Iterator[tuple[HubProcess, ExternalService, ExternalService]]:
    keep_token, clear_token = secrets.token_hex(16), secrets.token_hex(16)
    extra = external("keep", keep_token) + external("clear", clear_token)
    try:
        hub = services_hub(tmp_path, [], extra)
    except MissingBinary as e:
        unavailable(e)
    hub.start()
    keep = ExternalService(hub, "keep", keep_token, *SETTINGS)
    clear = ExternalService(
        hub, "clear", clear_token, *SETTINGS, "--CachedHubAuth.on_disconnect=clear"
    )
    try:
        keep.start()
        clear.start()
        yield hub, keep, clear
    finally:
        for process in (keep, clear):
            process.stop()
        hub.stop()
        for process in (keep, clear):
            assert "Traceback" not in process.log(), process.log()


def tokens(hub: HubProcess, n: int) -> list[tuple[str, str]]:
    return [(t["token"], t["id"]) for t in (api_token(hub, "alice") for _ in range(n))]


def connected(service: ExternalService, connects: int) -> bool:
    stream = service.stats()["stream"]
    return bool(stream["connected"]) and stream["connects"] > connects


def served_until(service: ExternalService, token: str, timeout: float) -> tuple[float, set[int]]:
    """Ask every 0.1 s until the service stops answering 200: when the last 200 was asked
    (seconds from now), and every status seen."""
    start, seen, last = time.monotonic(), set(), 0.0
    with httpx.Client() as client:
        while time.monotonic() - start < timeout:
            asked = time.monotonic() - start
            status = service.get(token, client)
            seen.add(status)
            if status != 200:
                return last, seen
            last = asked
            time.sleep(0.1)
    return last, seen


#: Longest a cached answer may be served after the hub goes silent: the cut is noticed
#: within stream_timeout (2 s) of the last heartbeat (0.5 s), then disconnected_ttl (3 s).
LONGEST = 2 + 0.5 + 3 + 0.5


def test_a_frozen_hub(cut: tuple[HubProcess, ExternalService, ExternalService]) -> None:
    hub, keep, clear = cut
    (t1, _), (t2, t2_id) = tokens(hub, 2)
    for service in (keep, clear):
        assert service.get(t1) == service.get(t2) == 200
    calls = clear.stats()["hub_calls"]
    connects = keep.stats()["stream"]["connects"], clear.stats()["stream"]["connects"]
    assert hub.process is not None
    os.kill(hub.process.pid, signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        # keep: served from the cache until the cut is noticed (2 s) plus disconnected_ttl (3 s)
        served, seen = served_until(keep, t1, timeout=15)
        assert 3 <= served <= LONGEST and seen == {200, 503}, (served, seen)
        # clear: once the cut is noticed, nothing cached is used: the hub is asked, and is frozen
        assert clear.get(t1) == 503 and clear.stats()["hub_calls"] > calls
        assert time.monotonic() - frozen < 15  # nothing hung
    finally:
        os.kill(hub.process.pid, signal.SIGCONT)
    # t2 is revoked while the services' streams are down; the hub replays it on reconnect
    with hub.admin(direct=True) as admin:
        assert admin.delete(f"users/alice/tokens/{t2_id}").status_code == 204
    until(lambda: connected(keep, connects[0]) and connected(clear, connects[1]), timeout=10)
    for service in (keep, clear):
        assert service.get(t2) in (401, 403)
        assert service.get(t1) == 200
    calls = clear.stats()["hub_calls"]
    assert clear.get(t1) == 200 and clear.stats()["hub_calls"] == calls  # cached again


def test_a_killed_and_restarted_hub(
    cut: tuple[HubProcess, ExternalService, ExternalService],
) -> None:
    hub, keep, clear = cut
    (t1, _), (t2, t2_id) = tokens(hub, 2)
    for service in (keep, clear):
        assert service.get(t1) == service.get(t2) == 200
    connects = keep.stats()["stream"]["connects"], clear.stats()["stream"]["connects"]
    hub.kill()
    served, seen = served_until(keep, t1, timeout=15)
    assert served <= LONGEST and seen == {200, 503}, (served, seen)  # at most disconnected_ttl
    assert clear.get(t1) == 503  # the cut is noticed at once (connection refused): the hub is asked
    # t2 ends while the hub is down (a change the hub itself did not make)
    with sqlite3.connect(hub.workdir / "jupyterhub.sqlite") as db:
        db.execute("DELETE FROM api_tokens WHERE id = ?", (int(t2_id[1:]),))
    hub.start()
    until(lambda: connected(keep, connects[0]) and connected(clear, connects[1]), timeout=15)
    for service in (keep, clear):
        assert service.get(t2) in (401, 403)  # the new hub's stream began with "reset"
        assert service.get(t1) == 200
    assert keep.stats()["evictions:reset"] >= 1
