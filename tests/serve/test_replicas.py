"""End to end: two replicas of ``jupyter-token-cache serve`` on one Redis, behind the proxy.

The figures the replicated mode is judged by, printed (``pytest -s``) and checked:
the same session gets the same token from either replica; 1,000 requests (200 at a time)
split across both make one mint; the hub's revocation is honoured by both (delay
measured); 10,000 hits make no hub request.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter

import httpx
import pytest

from ..hubprocess import flood
from .conftest import Setup
from .replicas import hub_requests, hub_stats, post, user_token

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


def test_the_same_session_gets_the_same_token_from_either_replica(setup: Setup) -> None:
    hub, (a, b) = setup
    credential = user_token(hub, "ann")["token"]
    first = post(a.url, "notebook", credential)
    assert first.status_code == 200, first.text
    seen = len(hub_requests(hub))
    again = post(b.url, "notebook", credential)
    assert again.status_code == 200, again.text
    # a's introspection of the caller and a's entry are both on Redis: b asks the hub nothing
    assert hub_requests(hub)[seen:] == []
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["token"] == first.json()["token"]
    assert again.json()["cached"] is True
    internal = [post(r.url, "internal", credential, {"service": "dask"}).json() for r in (b, a)]
    assert internal[0]["id"] == internal[1]["id"] != first.json()["id"]
    # the hub's own route hands out that same token: one policy, one authority
    direct = post(f"{hub.url}/hub/api/token-cache", "notebook", credential)
    assert direct.json()["id"] == first.json()["id"]


def test_1000_concurrent_requests_across_both_replicas_make_one_mint(setup: Setup) -> None:
    hub, replicas = setup
    credential = user_token(hub, "bob")["token"]
    mints = hub_stats(hub)["mints"]
    seen = len(hub_requests(hub))

    headers = {"Authorization": f"token {credential}"}

    async def mint(pool: httpx.AsyncClient, k: int) -> httpx.Response:
        return await pool.post(f"{replicas[k % 2].url}/notebook", headers=headers)

    start = time.monotonic()
    answers = asyncio.run(flood(mint))  # 200 clients of 5 requests, through the proxy
    took = time.monotonic() - start
    assert Counter(r.status_code for r in answers) == {200: 1000}
    assert len({r.json()["token"] for r in answers}) == 1
    assert hub_stats(hub)["mints"] - mints == 1
    asked = Counter(hub_requests(hub)[seen:])
    print(
        f"\n1000 requests (200 at a time) across 2 replicas in {took:.2f} s; hub requests: {dict(asked)}"
    )
    assert asked[("POST", "/hub/api/token-cache/notebook")] == 1
    # the new credential's one introspection (shared on Redis), plus the stats calls
    assert asked[("POST", "/hub/api/token-cache/introspect")] <= 2


def test_a_revocation_in_the_hub_is_honoured_by_both_replicas(setup: Setup) -> None:
    hub, (a, b) = setup
    credential = user_token(hub, "cyd")["token"]
    delays = []
    with httpx.Client(timeout=30) as client, hub.admin(direct=True) as admin:
        for _ in range(20):
            token = post(a.url, "notebook", credential, client=client).json()
            assert post(b.url, "notebook", credential, client=client).json()["id"] == token["id"]
            r = admin.delete(f"users/cyd/tokens/{token['id']}")
            assert r.status_code == 204
            revoked = time.monotonic()
            pending = {a.name: a, b.name: b}
            delay = 0.0
            while pending:
                for name, replica in list(pending.items()):
                    answer = post(replica.url, "notebook", credential, client=client).json()
                    if answer["token"] != token["token"]:  # ids are reused: not an identity
                        del pending[name]
                delay = time.monotonic() - revoked
                assert delay < 2, f"{sorted(pending)} still serve the revoked token"
            delays.append(delay)
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    print(f"\nrevocation honoured by both replicas: p50 {statistics.median(delays) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms, max {delays[-1] * 1000:.1f} ms over {len(delays)}")  # fmt: skip


def test_10000_hits_make_no_hub_request(setup: Setup) -> None:
    hub, replicas = setup
    credential = user_token(hub, "dee")["token"]
    for replica in replicas:  # the one mint, and each replica's first look
        assert post(replica.url, "notebook", credential).status_code == 200
    before = hub_stats(hub)
    seen = len(hub_requests(hub))

    async def hits(n: int, concurrency: int = 20) -> Counter[int]:
        statuses: Counter[int] = Counter()
        async with httpx.AsyncClient(timeout=60) as client:

            async def worker(k: int) -> None:
                for i in range(k, n, concurrency):
                    r = await client.post(f"{replicas[i % 2].url}/notebook",
                                          headers={"Authorization": f"token {credential}"})  # fmt: skip
                    statuses[r.status_code] += 1

            await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return statuses

    start = time.monotonic()
    statuses = asyncio.run(hits(10_000))
    took = time.monotonic() - start
    asked = hub_requests(hub)[seen:]
    print(f"\n10,000 hits across 2 replicas in {took:.1f} s ({10_000 / took:.0f}/s); "
          f"hub requests: {len(asked)}")  # fmt: skip
    assert statuses == {200: 10_000}
    assert asked == []
    # the hub's own counters agree: no introspection, no token request
    after = hub_stats(hub)
    assert after["introspections"] == before["introspections"]
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])
