"""With the hub frozen, a cached token at the example service never waits behind new tokens.

The example service checks tokens with ``CachedHubAuthenticated``, on its own event
loop. The same service with JupyterHub's ``HubAuthenticated`` and ``CachedHubAuth``
(``--synchronous``, the one-line change) is measured beside it: there every check runs
on ``HubAuth``'s one background thread while the service's loop waits, so requests are
answered one ``check_timeout`` after another, the cached token's too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from ..hubprocess import HubProcess
from .services import api_token, running, service

pytestmark = pytest.mark.e2e

TIMEOUT = ["--CachedHubAuth.check_timeout=2"]
NEW_TOKENS = 5


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("loop")
    services = [service("whoami", *TIMEOUT), service("whoami-sync", "--synchronous", *TIMEOUT)]
    with running(workdir, services) as hub:
        yield hub


async def timed(client: httpx.AsyncClient, url: str, token: str, delay: float) -> tuple[int, float]:
    await asyncio.sleep(delay)
    started = time.monotonic()
    r = await client.get(url, headers={"Authorization": f"token {token}"})
    return r.status_code, time.monotonic() - started


def frozen_round(hub: HubProcess, name: str) -> dict[str, object]:
    """A cached token and five new ones sent together while the hub is frozen."""
    url = f"{hub.url}/services/{name}/"
    cached = api_token(hub, "alice")["token"]
    assert httpx.get(url, headers={"Authorization": f"token {cached}"}).status_code == 200
    new = [api_token(hub, "alice")["token"] for _ in range(NEW_TOKENS)]

    async def together() -> list[tuple[int, float]]:
        async with httpx.AsyncClient(timeout=60) as client:
            # the new tokens first, the cached one 50 ms behind them
            return await asyncio.gather(
                *(timed(client, url, t, 0) for t in new), timed(client, url, cached, 0.05)
            )

    assert hub.process is not None
    os.kill(hub.process.pid, signal.SIGSTOP)
    try:
        results = asyncio.run(together())
    finally:
        os.kill(hub.process.pid, signal.SIGCONT)
    *fresh, (cached_status, cached_seconds) = results
    return {
        "cached": {"status": cached_status, "seconds": round(cached_seconds, 3)},
        "new": [{"status": s, "seconds": round(t, 3)} for s, t in fresh],
    }


def test_a_cached_token_answers_at_once_while_new_tokens_wait_for_a_frozen_hub(
    hub: HubProcess,
) -> None:
    loop = frozen_round(hub, "whoami")
    sync = frozen_round(hub, "whoami-sync")
    print(json.dumps({"CachedHubAuthenticated": loop, "HubAuthenticated (synchronous)": sync}))
    assert loop["cached"] == {"status": 200, "seconds": loop["cached"]["seconds"]}  # type: ignore[index]
    assert loop["cached"]["seconds"] < 0.05  # type: ignore[index]
    waits = [n["seconds"] for n in loop["new"]]  # type: ignore[union-attr]
    assert {n["status"] for n in loop["new"]} == {503}  # type: ignore[union-attr]
    assert max(waits) < 2 + 1.5  # together, within check_timeout: not one after another
    # the synchronous path, for the record: each waits for the ones before it
    assert sync["cached"]["status"] == 200  # type: ignore[index]
    assert sync["cached"]["seconds"] > 2  # type: ignore[index]
