"""Suite 9: lifecycle events (``GET /hub/api/token-cache/events``, Server-Sent Events).

One ``jupyterhub`` process (memory backend, the hub config of suites 1-6). Subscribers
read the stream on the hub's own port with the admin service's token, in a process of
their own (:mod:`benchmarks.subscribers`); API calls go over other connections.

1. revocation to event: mint a notebook token, ``DELETE /hub/api/users/{name}/tokens/{id}``,
   and take the time from the moment the client has the DELETE's response to the moment
   the subscriber has the ``token-revoked`` event naming that id. The hub publishes when
   the deleting transaction commits, before the handler answers, so the event may arrive
   first: such latencies are negative (kept as measured, and counted);
2. hit latency with a subscriber connected: notebook hit against ``GET /hub/api/user``,
   alternating rounds as in suites 1-6;
3. throughput at concurrency 10 with no subscriber and with 100 idle ones, alternating
   round by round (the subscribers connect and disconnect between rounds).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.hubprocess import HubProcess

from . import progress
from .hub import CONFIG, GET_USER, NOTEBOOK_HIT, _user_tokens
from .subscribers import Subscribers, now
from .timing import Figures, burst, interleaved

#: Notebook hit / GET /hub/api/user p50 with a subscriber connected: at most this.
HIT_TARGET = 1.15
CONCURRENCY = 10
#: Seconds to let the hub settle after subscribers connect or leave, before a burst.
SETTLE = 0.2


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.revocations, self.warmup = (50, 2) if quick else (1000, 10)
        self.rounds, self.per_round = (2, 20) if quick else (20, 100)
        self.idle = 10 if quick else 100
        # requests per contender and subscriber count, in rps_rounds alternating bursts
        self.rps_total, self.rps_rounds = (100, 2) if quick else (2000, 10)


async def run(quick: bool) -> dict[str, Any]:
    """Figures of the three measurements, for the report's Events section."""
    sizes = Sizes(quick)
    with tempfile.TemporaryDirectory(prefix="jtc-bench-events-") as tmp:
        config = CONFIG.format(storage='c.TokenCache.backend = "memory"')
        hub = HubProcess(Path(tmp) / "events", config).start()
        try:
            return await _measure(hub, sizes)
        finally:
            hub.stop()


async def _measure(hub: HubProcess, sizes: Sizes) -> dict[str, Any]:
    with hub.admin(direct=True) as admin:
        revoking, hitting = _user_tokens(admin, "bench", 2)
    api = f"{hub.hub_url}/hub/api/"
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    results: dict[str, Any] = {"backend": "memory"}
    async with httpx.AsyncClient(base_url=api, limits=limits, timeout=120) as http:
        async with Subscribers(api, hub.service_token, 1, record=True) as stream:
            progress.step("revocation to event delivery")
            results["revocation"] = await _revocations(http, stream, revoking, sizes)
            progress.step("hit latency with a stream subscriber")
            results["hit_latency"] = await _hit_latency(http, hitting, sizes)
        progress.step("throughput with 0..N stream subscribers")
        results["throughput"] = await _throughput(http, api, hub.service_token, hitting, sizes)
    return results


async def _revocations(
    http: httpx.AsyncClient, stream: Subscribers, parent: str, sizes: Sizes
) -> dict[str, Any]:
    auth = {"Authorization": f"token {parent}"}
    latencies = Figures("revocation to token-revoked event")
    round_trips = Figures("DELETE round trip")
    for i in range(sizes.warmup + sizes.revocations):
        r = await http.post("token-cache/notebook", headers=auth, json={})
        r.raise_for_status()
        minted = r.json()
        if minted["cached"]:
            raise RuntimeError(
                f"notebook token {minted['id']} was still cached after its revocation"
            )
        mark = len(stream.events)
        sent = now()
        r = await http.delete(f"users/bench/tokens/{minted['id']}", headers=auth)
        answered = now()
        if r.status_code != 204:
            raise RuntimeError(f"DELETE token {minted['id']}: {r.status_code} {r.text[:200]}")
        arrived = await stream.revoked(minted["id"], after=mark)
        if arrived < sent:  # the clocks of the two processes would disagree
            raise RuntimeError(f"the event for {minted['id']} arrived before its DELETE was sent")
        if i >= sizes.warmup:
            latencies.samples.append(arrived - answered)
            round_trips.samples.append(answered - sent)
    summary = latencies.summary()
    del summary["rps"]
    samples = latencies.samples
    return {
        **summary,
        "min_us": min(samples) * 1e6,
        "max_us": max(samples) * 1e6,
        "before_response": sum(1 for s in samples if s <= 0),
        "delete_round_trip_p50_us": round_trips.percentile(50) * 1e6,
        "warmup": sizes.warmup,
    }


async def _hit_latency(http: httpx.AsyncClient, parent: str, sizes: Sizes) -> dict[str, Any]:
    auth = {"Authorization": f"token {parent}"}
    contenders = {
        GET_USER: lambda: http.get("user", headers=auth),
        NOTEBOOK_HIT: lambda: http.post("token-cache/notebook", headers=auth, json={}),
    }
    for op in contenders.values():  # prime the cache, check every path answers
        (await op()).raise_for_status()
    figures = await interleaved(contenders, rounds=sizes.rounds, per_round=sizes.per_round)
    ratio = figures[NOTEBOOK_HIT].percentile(50) / figures[GET_USER].percentile(50)
    return {
        "subscribers": 1,
        "figures": {
            name: {k: v for k, v in f.summary().items() if k != "rps"}
            for name, f in figures.items()
        },
        "ratio": ratio,
        "target": HIT_TARGET,
        "met": ratio <= HIT_TARGET,
    }


async def _throughput(
    http: httpx.AsyncClient, api: str, token: str, parent: str, sizes: Sizes
) -> dict[str, Any]:
    auth = {"Authorization": f"token {parent}"}

    async def hit() -> None:
        r = await http.post("token-cache/notebook", headers=auth, json={})
        r.raise_for_status()

    async def user() -> None:
        (await http.get("user", headers=auth)).raise_for_status()

    contenders = {NOTEBOOK_HIT: hit, GET_USER: user}
    counts = (0, sizes.idle)
    per_round = max(1, sizes.rps_total // sizes.rps_rounds)
    spent = {(n, name): 0.0 for n in counts for name in contenders}

    async def bursts(n: int) -> None:
        await asyncio.sleep(SETTLE)
        for name, op in contenders.items():
            spent[n, name] += await burst(op, CONCURRENCY, per_round)

    for op in contenders.values():  # warm up the connection pool
        await burst(op, CONCURRENCY, min(per_round, 100))
    for round_ in range(sizes.rps_rounds):
        for n in counts if round_ % 2 == 0 else counts[::-1]:
            if n:
                async with Subscribers(api, token, n):
                    await bursts(n)
            else:
                await bursts(n)
    rps = {
        name: {str(n): per_round * sizes.rps_rounds / spent[n, name] for n in counts}
        for name in contenders
    }
    for figures in rps.values():
        figures["ratio"] = figures[str(sizes.idle)] / figures["0"]
    return {
        "concurrency": CONCURRENCY,
        "subscribers": sizes.idle,
        "requests": per_round * sizes.rps_rounds,
        "rounds": sizes.rps_rounds,
        "rps": rps,
    }
