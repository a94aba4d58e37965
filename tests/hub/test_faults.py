"""Fault injection under load: backends frozen, killed and restarted while requests run.

1,000 requests (and 200 more after the recovery, however fast the first ones were) at
concurrency 10 from 5 sessions; a fault hits after the first 200.
Expected: no 5xx, p99 bounded by operation_timeout plus one mint, caching back within
2 s of recovery, and no token that was revoked during the outage served afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from traitlets.config import Config

from ..servers import Server
from .conftest import Hub

OPERATION_TIMEOUT = 0.2
REQUESTS, CONCURRENCY, SESSIONS = 1000, 10, 5


@pytest.fixture(params=["redis", "memcached"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(f"own_{request.param}")


@pytest.fixture
def hub_config(hub_config: Config, server: Server, crypt_key: str) -> Config:
    hub_config.TokenCache.backend = "redis" if server.scheme == "redis" else "memcached"
    hub_config.TokenCache.url = server.url
    hub_config.TokenCache.encryption_key = crypt_key
    hub_config.TokenCache.operation_timeout = OPERATION_TIMEOUT
    hub_config.TokenCache.retry_interval = 0.2
    return hub_config


async def freeze(server: Server) -> None:
    server.pause()
    await asyncio.sleep(3 * OPERATION_TIMEOUT)
    server.resume()


async def crash(server: Server) -> None:
    server.kill()
    await asyncio.sleep(3 * OPERATION_TIMEOUT)
    server.start()


@pytest.mark.parametrize("fault", [freeze, crash], ids=["SIGSTOP", "SIGKILL"])
async def test_fault_under_load(hub: Hub, server: Server, fault: Callable[[Server], Any]) -> None:
    parents = [hub.token(f"user{i}") for i in range(SESSIONS)]
    first = {p: (await hub.post("notebook", p, {})).json() for p in parents}
    victim = parents[0]
    results: list[tuple[float, float, int, dict[str, Any]]] = []  # start, end, status, body
    sent = 0
    recovered_at: float | None = None
    revoked_at: float | None = None

    def more() -> bool:
        """At least REQUESTS, and 200 more started after the recovery (at most 5x REQUESTS)."""
        if sent >= 5 * REQUESTS:
            return False
        if sent < REQUESTS or recovered_at is None:
            return True
        return sum(started > recovered_at for started, *_ in results) < 200

    async def worker() -> None:
        nonlocal sent
        while more():
            parent = parents[sent % SESSIONS]
            sent += 1
            started = time.monotonic()
            r = await hub.post("notebook", parent, {})
            results.append(
                (started, time.monotonic(), r.status_code, r.json() | {"parent": parent})
            )

    async def inject() -> None:
        nonlocal recovered_at, revoked_at
        while sent < 200:
            await asyncio.sleep(0.005)
        outage = asyncio.ensure_future(fault(server))
        await asyncio.sleep(OPERATION_TIMEOUT)  # mid-outage: revoke the victim's cached token
        # the operator's own client: the load's connection pool is busy, as it would be
        async with httpx.AsyncClient(base_url=hub.url, timeout=30) as operator:
            r = await operator.delete(
                f"api/users/user0/tokens/{first[victim]['id']}",
                headers={"Authorization": f"token {victim}"},
            )
        assert r.status_code == 204
        revoked_at = time.monotonic()
        await outage
        recovered_at = time.monotonic()

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)), inject())
    assert recovered_at is not None and revoked_at is not None

    statuses = [status for _, _, status, _ in results]
    latencies = sorted(end - start for start, end, _, _ in results)
    p99 = latencies[int(0.99 * len(latencies))]
    after = [(s, b) for s, _, _, b in results if s > recovered_at and b.get("cached")]
    recovery = (min(s for s, _ in after) - recovered_at) if after else float("inf")
    print(f"\n{server.binary} {fault.__name__}: {len(results)} requests, "
          f"{sum(s >= 500 for s in statuses)} 5xx, p99 {p99 * 1e3:.0f} ms, caching back {recovery:.2f} s after recovery")  # fmt: skip

    assert len(results) >= REQUESTS and all(s == 200 for s in statuses)
    # nothing waits on a dead backend: a bound well under the 5 s lease, loose enough for
    # two noisy cores (the measured p99 is in the closing notes, not asserted here)
    assert p99 < OPERATION_TIMEOUT + 2.0
    assert recovery < 2.0
    served_after_revoke = [b for s, _, _, b in results if s > revoked_at and b["parent"] == victim]
    assert served_after_revoke and all(
        b["token"] != first[victim]["token"] for b in served_after_revoke
    )
