"""Suite 10: a service checking tokens with CachedHubAuth against JupyterHub's plain HubAuth.

One ``jupyterhub`` process (sqlite, configurable-http-proxy, the config of the end-to-end
service tests) and the example service (``examples/service/whoami.py``) run as separate
processes on loopback, started by the benchmark (:class:`tests.e2e.services.ExternalService`):

1. latency of ``GET /services/{name}/`` with a token, sent to the service's own port (not
   through the proxy, whose noise would hide differences of a few per cent): a cached
   answer with CachedHubAuth (memory backend) against a cached answer of plain HubAuth,
   and against what an answer costs when nothing is cached (a new token per request:
   HubAuth's ``GET /hub/api/user``, CachedHubAuth's introspection); the plain service's
   ``/stats`` (no token check) is the service's own floor. Contenders alternate round by
   round (:func:`.timing.interleaved`). ``--HubAuth.cache_max_age=0`` is no way to measure
   "uncached": HubAuth's ``_ExpiringDict`` reads 0 as "cache forever";
2. hub calls for a number of requests from many users, spread over two replicas: two
   CachedHubAuth replicas sharing answers on one redis-server against two plain HubAuth
   replicas (each its own cache). Counted at the hub, from its Prometheus request
   histogram (``jupyterhub_request_duration_seconds_count`` by handler), and, for the
   cached pair, from the token cache's own ``introspections.requests``;
3. revocation delay: with a poller already asking the cached service with a token
   (one request after another, on its own connection), ``DELETE
   /hub/api/users/{name}/tokens/{id}``; the delay runs from the moment the DELETE is sent
   (and, also reported, from the moment its response is in) to the moment the poller has
   the first refusal. A refusal includes one introspection call (the evicted answer is
   asked again, and the hub says inactive). Plain HubAuth keeps serving its cached
   answer for ``cache_max_age`` (300 s): one sample shows it still accepting after 1 s;
4. memory per cached answer, in this process: a CachedHubAuth (memory backend) checks
   N fresh tokens at the hub under tracemalloc, after a warm-up; what stays allocated
   (the answers in the store, their keys, the eviction index) over N.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import resource
import secrets
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families
from traitlets.config import Config

from jupyter_token_cache.services import CachedHubAuth
from tests.e2e.services import ExternalService, external, hub_checks, services_hub
from tests.hubprocess import HubProcess
from tests.servers import RedisServer

from .subscribers import Subscribers, now
from .timing import Figures, burst, cpu_seconds, interleaved

CACHED = "CachedHubAuth, cached answer"
PLAIN = "HubAuth, cached answer"
PLAIN_NEW = "HubAuth, new token (GET /hub/api/user)"
CACHED_NEW = "CachedHubAuth, new token (introspection)"
FLOOR = "service floor: GET /stats, no token check"
#: CachedHubAuth hit / HubAuth hit p50: at most this.
HIT_TARGET = 1.1
#: Revocation delay p99 (DELETE sent to refusal), seconds: at most this.
REVOCATION_TARGET = 0.050
SELF_HANDLER = "jupyterhub.apihandlers.users.SelfAPIHandler"
INTROSPECT_HANDLER = "jupyter_token_cache.hub.introspect.IntrospectHandler"
#: Most token mints in flight at once (the hub is one process on a shared machine).
MINT_CONCURRENCY = 8


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.rounds, self.per_round = (2, 10) if quick else (20, 50)
        self.users, self.requests = (5, 200) if quick else (50, 10_000)
        self.revocations, self.warmup = (20, 2) if quick else (1000, 10)
        self.answers, self.answers_warmup = (200, 20) if quick else (10_000, 100)


def plain(name: str, token: str) -> str:
    """Hub config for a plain HubAuth service: its own token, no token-cache scopes."""
    return f"c.JupyterHub.services.append({{'name': {name!r}, 'api_token': {token!r}}})\n"


async def run(quick: bool) -> dict[str, Any]:
    """Figures of the four measurements, for the report's Services section."""
    sizes = Sizes(quick)
    tokens = {
        name: secrets.token_hex(16) for name in ("cached", "plain", "shared", "pair", "inproc")
    }
    extra = (
        external("cached", tokens["cached"])
        + external("shared", tokens["shared"])
        + external("inproc", tokens["inproc"])
        + plain("plain", tokens["plain"])
        + plain("pair", tokens["pair"])
        + "c.JupyterHub.authenticate_prometheus = False\n"
    )
    started = time.perf_counter()
    redis = RedisServer().start()
    services: list[ExternalService] = []
    try:
        with tempfile.TemporaryDirectory(prefix="jtc-bench-services-") as tmp:
            hub = services_hub(Path(tmp) / "hub", [], extra).start()
            try:
                key = Fernet.generate_key().decode()
                shared = ["--AnswerCache.backend=redis", f"--AnswerCache.url={redis.url}",
                          f"--AnswerCache.encryption_key={key}"]  # fmt: skip
                services = [
                    ExternalService(hub, "cached", tokens["cached"]),
                    ExternalService(hub, "plain", tokens["plain"], "--plain"),
                    *(ExternalService(hub, "shared", tokens["shared"], *shared) for _ in range(2)),
                    *(ExternalService(hub, "pair", tokens["pair"], "--plain") for _ in range(2)),
                ]
                await asyncio.gather(*(asyncio.to_thread(s.start) for s in services))
                ready = time.perf_counter() - started
                results = await _measure(hub, services, tokens["inproc"], sizes)
                results["seconds"]["start (hub, redis, services)"] = ready
                return results
            finally:
                for service in services:
                    service.stop()
                hub.stop()
    finally:
        redis.stop()


async def _measure(
    hub: HubProcess, services: list[ExternalService], inproc: str, sizes: Sizes
) -> dict[str, Any]:
    cached, plain_, *replicas = services
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    results: dict[str, Any] = {}
    async with (
        httpx.AsyncClient(base_url=f"{hub.hub_url}/hub/api/", timeout=60, limits=limits,
                          headers={"Authorization": f"token {hub.service_token}"}) as admin,
        httpx.AsyncClient(timeout=60, limits=limits) as http,
    ):  # fmt: skip
        minter = Minter(admin)
        seconds: dict[str, float] = {}
        steps: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "latency": lambda: _latency(http, minter, cached, plain_, hub, sizes),
            "hub_calls": lambda: _hub_calls(http, minter, hub, replicas[:2], replicas[2:], sizes),
            "revocation": lambda: _revocation(http, minter, cached, plain_, inproc, sizes),
            "memory": lambda: _memory(minter, hub, inproc, sizes),
        }
        for name, step in steps.items():
            started = time.perf_counter()
            results[name] = await step()
            seconds[name] = time.perf_counter() - started
    return results | {"seconds": seconds}


class Minter:
    """User tokens minted at the hub by the admin service (users made on first use)."""

    def __init__(self, admin: httpx.AsyncClient) -> None:
        self.admin = admin
        self._users: set[str] = set()

    async def one(self, user: str) -> tuple[str, str]:
        """A new token of ``user`` (it may use every service): the token and its id."""
        if user not in self._users:
            r = await self.admin.post(f"users/{user}")
            if r.status_code not in (201, 409):
                raise RuntimeError(f"cannot create user {user}: {r.status_code} {r.text[:200]}")
            self._users.add(user)
        r = await self.admin.post(f"users/{user}/tokens", json={"note": "bench"})
        if r.status_code != 201:
            raise RuntimeError(f"cannot mint a token for {user}: {r.status_code} {r.text[:200]}")
        made = r.json()
        return made["token"], made["id"]

    async def many(self, users: list[str]) -> list[str]:
        """One new token per entry of ``users``, a few mints at a time."""
        for user in dict.fromkeys(users):
            await self.one(user)  # make the users one by one (creating one twice is a 409)
        made: list[str] = [""] * len(users)
        index = iter(range(len(users)))

        async def worker() -> None:
            for i in index:
                made[i] = (await self.one(users[i]))[0]

        await asyncio.gather(*(worker() for _ in range(MINT_CONCURRENCY)))
        return made


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuShares:
    """CPU seconds per wall second of this process (the load generator) and others, while open."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def __enter__(self) -> CpuShares:
        self._wall, self._own = time.perf_counter(), _own_cpu()
        self._others = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall
        self.shares = {"load generator (this process)": (_own_cpu() - self._own) / wall}
        for name, pid in self.pids.items():
            self.shares[name] = (cpu_seconds(pid) - self._others[name]) / wall
        self.wall = wall


def _pids(hub: HubProcess, **services: ExternalService) -> dict[str, int]:
    pids = {"hub": hub.process.pid} if hub.process is not None else {}
    for name, service in services.items():
        if service.process is not None:
            pids[name] = service.process.pid
    return pids


# -- 1. latency ---------------------------------------------------------------------------


async def _latency(
    http: httpx.AsyncClient,
    minter: Minter,
    cached: ExternalService,
    plain_: ExternalService,
    hub: HubProcess,
    sizes: Sizes,
) -> dict[str, Any]:
    token, _ = await minter.one("bench")
    # a new token per request of the two "new token" contenders, warm-up included
    fresh = sizes.rounds * sizes.per_round + min(sizes.per_round, 200)
    new_plain = iter(await minter.many(["bench"] * fresh))
    new_cached = iter(await minter.many(["bench"] * fresh))

    def get(url: str, tokens: Iterator[str] | None = None) -> Callable[[], Awaitable[None]]:
        async def op() -> None:
            headers = _auth(next(tokens) if tokens is not None else token)
            r = await http.get(url, headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"GET {url}: {r.status_code} {r.text[:200]}")

        return op

    contenders = {
        CACHED: get(cached.url),
        PLAIN: get(plain_.url),
        CACHED_NEW: get(cached.url, new_cached),
        PLAIN_NEW: get(plain_.url, new_plain),
        FLOOR: get(f"{plain_.url}stats"),
    }
    for name in (CACHED, PLAIN):  # prime both caches with the token
        await contenders[name]()
    with CpuShares(_pids(hub, cached=cached, plain=plain_)) as cpu:
        figures = await interleaved(contenders, rounds=sizes.rounds, per_round=sizes.per_round)
    p50 = {name: f.percentile(50) for name, f in figures.items()}
    p99 = {name: f.percentile(99) for name, f in figures.items()}
    ratios = [
        _ratio(f"{CACHED} / {PLAIN}, p50", p50[CACHED] / p50[PLAIN], HIT_TARGET),
        _ratio(f"{CACHED} / {PLAIN}, p99", p99[CACHED] / p99[PLAIN]),
        _ratio(f"{PLAIN_NEW} / {CACHED}, p50", p50[PLAIN_NEW] / p50[CACHED]),
        _ratio(f"{PLAIN_NEW} / {PLAIN}, p50", p50[PLAIN_NEW] / p50[PLAIN]),
        _ratio(f"{CACHED_NEW} / {PLAIN_NEW}, p50", p50[CACHED_NEW] / p50[PLAIN_NEW]),
    ]
    return {
        "rounds": sizes.rounds,
        "per_round": sizes.per_round,
        "figures": {name: _summary(f) for name, f in figures.items()},
        "ratios": ratios,
        "cpu_share": cpu.shares,
        "seconds": cpu.wall,
    }


def _summary(figures: Figures) -> dict[str, Any]:
    return {k: v for k, v in figures.summary().items() if k != "rps"}


def _ratio(label: str, value: float, target: float | None = None) -> dict[str, Any]:
    return {"ratio": label, "value": value, "target": target,
            "met": None if target is None else value <= target}  # fmt: skip


# -- 2. hub calls -------------------------------------------------------------------------


async def _hub_calls(
    http: httpx.AsyncClient,
    minter: Minter,
    hub: HubProcess,
    cached: list[ExternalService],
    plain_: list[ExternalService],
    sizes: Sizes,
) -> dict[str, Any]:
    """Requests from ``sizes.users`` users (one token each), alternating between two replicas."""
    tokens = await minter.many([f"user{i}" for i in range(sizes.users)])
    results: dict[str, Any] = {"users": sizes.users, "requests": sizes.requests, "replicas": 2}
    results["CachedHubAuth, shared Redis"] = await _count(http, hub, cached, tokens, sizes)
    results["HubAuth, a cache per replica"] = await _count(http, hub, plain_, tokens, sizes)
    return results


async def _count(
    http: httpx.AsyncClient,
    hub: HubProcess,
    pair: list[ExternalService],
    tokens: list[str],
    sizes: Sizes,
) -> dict[str, Any]:
    """Hub calls while ``pair`` answers ``sizes.requests`` requests at concurrency 10."""
    mix = itertools.cycle(itertools.product(tokens, pair))
    statuses: dict[str, int] = {}

    async def request() -> None:
        token, replica = next(mix)
        status = str((await http.get(replica.url, headers=_auth(token))).status_code)
        statuses[status] = statuses.get(status, 0) + 1

    before, checks = await _hub_requests(http, hub), hub_checks(hub)
    with CpuShares(_pids(hub, **{f"replica {i + 1}": s for i, s in enumerate(pair)})) as cpu:
        await burst(request, 10, sizes.requests)
    after = await _hub_requests(http, hub)
    get_user = after[SELF_HANDLER] - before[SELF_HANDLER]
    introspect = after[INTROSPECT_HANDLER] - before[INTROSPECT_HANDLER]
    figures: dict[str, Any] = {
        "get_user": get_user,
        "introspect": introspect,
        "hub_calls": get_user + introspect,
        "statuses": statuses,
        "seconds": cpu.wall,
        "cpu_share": cpu.shares,
        # the token cache's own count of introspections (0 for plain HubAuth)
        "introspections": hub_checks(hub) - checks,
    }
    stats = [s.stats() for s in pair]
    if any(stats):
        keep = ("hits", "misses", "hub_calls")
        figures["replica_stats"] = [{k: v for k, v in s.items() if k in keep} for s in stats]
    return figures


async def _hub_requests(http: httpx.AsyncClient, hub: HubProcess) -> dict[str, int]:
    """Requests the hub has answered 200, by handler class (from its Prometheus metrics)."""
    r = await http.get(f"{hub.hub_url}/hub/metrics")
    r.raise_for_status()
    counts = dict.fromkeys((SELF_HANDLER, INTROSPECT_HANDLER), 0)
    for family in text_string_to_metric_families(r.text):
        if family.name != "jupyterhub_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_count") and labels.get("code") == "200":
                if labels.get("handler") in counts:
                    counts[labels["handler"]] += int(sample.value)
    return counts


# -- 3. revocation delay ------------------------------------------------------------------


async def _revocation(
    http: httpx.AsyncClient,
    minter: Minter,
    cached: ExternalService,
    plain_: ExternalService,
    token: str,
    sizes: Sizes,
) -> dict[str, Any]:
    """Revocation delays, split at the moment a subscriber of the hub's events has the event.

    ``token`` (a service's, with custom:token-cache:events) subscribes in a process of its
    own (:mod:`.subscribers`), timed on the same system-wide monotonic clock as the polls.
    """
    from_sent = Figures("DELETE sent to first refusal")
    from_answered = Figures("DELETE answered to first refusal")
    to_event = Figures("DELETE sent to the event at a subscriber")
    after_event = Figures("event at a subscriber to first refusal")
    round_trips = Figures("DELETE round trip")
    poll_trips = Figures("poll round trip")
    api = f"{cached.hub.hub_url}/hub/api/"
    async with (
        httpx.AsyncClient(timeout=10) as poller,
        Subscribers(api, token, 1, record=True) as stream,
    ):
        with CpuShares(_pids(cached.hub, cached=cached)) as cpu:
            i = false_refusals = 0
            while i < sizes.warmup + sizes.revocations:
                one = await _revoke(http, poller, minter, cached, stream)
                if one is None or one[2][-1][1] < one[0]:
                    # refused before its DELETE was sent: not a revocation delay, an outage
                    false_refusals += 1
                    if false_refusals > sizes.revocations:
                        raise RuntimeError(f"{false_refusals} valid tokens refused")
                    continue
                sent, answered, polls, event = one
                i += 1
                if i > sizes.warmup:
                    refused = polls[-1][1]
                    from_sent.samples.append(refused - sent)
                    from_answered.samples.append(refused - answered)
                    to_event.samples.append(event - sent)
                    after_event.samples.append(refused - event)
                    round_trips.samples.append(answered - sent)
                    poll_trips.samples.extend(end - start for start, end, _ in polls)
    in_hub = _logged_durations(cached.hub, "DELETE /hub/api/users/revoked/tokens/")
    sample = await _plain_still_accepts(http, minter, cached, plain_)
    return {
        "n": sizes.revocations,
        "warmup": sizes.warmup,
        "from_sent": _summary(from_sent) | {"max_us": max(from_sent.samples) * 1e6},
        "from_answered": _summary(from_answered) | {"min_us": min(from_answered.samples) * 1e6},
        "to_event": _summary(to_event),
        "after_event": _summary(after_event),
        "refused_before_answer": sum(1 for s in from_answered.samples if s <= 0),
        # a new token refused before its DELETE was sent (those rounds are not measured)
        "valid_refused": false_refusals,
        "delete_round_trip_p50_us": round_trips.percentile(50) * 1e6,
        "delete_round_trip_p99_us": round_trips.percentile(99) * 1e6,
        # the hub's own time for the DELETE (its request log), warm-up included
        "delete_in_hub_p50_us": in_hub.percentile(50) * 1e6,
        "delete_in_hub_p99_us": in_hub.percentile(99) * 1e6,
        "poll_round_trip_p50_us": poll_trips.percentile(50) * 1e6,
        "target_p99_ms": REVOCATION_TARGET * 1e3,
        "met": from_sent.percentile(99) <= REVOCATION_TARGET,
        "cpu_share": cpu.shares,
        "plain_sample": sample,
    }


Poll = tuple[float, float, int]  # request sent, response received, status


async def _revoke(
    http: httpx.AsyncClient,
    poller: httpx.AsyncClient,
    minter: Minter,
    cached: ExternalService,
    stream: Subscribers,
) -> tuple[float, float, list[Poll], float] | None:
    """Mint, cache, poll, DELETE: when the DELETE was sent and answered, every poll, and
    when the subscriber had the token-revoked event.

    The poller asks the service one request after another from before the DELETE is
    sent until the first refusal (the last poll), for 5 s at most. None when its first
    request was refused: a valid token refused, and nothing deleted.
    """
    token, token_id = await minter.one("revoked")
    r = await http.get(cached.url, headers=_auth(token))
    if r.status_code != 200:
        raise RuntimeError(f"a new token was refused: {r.status_code} {r.text[:200]}")
    accepted = asyncio.Event()
    polls: list[Poll] = []

    async def poll() -> None:
        deadline = time.perf_counter() + 5
        while time.perf_counter() < deadline:
            sent = now()
            status = (await poller.get(cached.url, headers=_auth(token))).status_code
            polls.append((sent, now(), status))
            if status != 200:
                return
            accepted.set()
        raise RuntimeError(f"token {token_id} still accepted 5 s after its DELETE")

    polling = asyncio.ensure_future(poll())
    waiting = asyncio.ensure_future(accepted.wait())
    await asyncio.wait({polling, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if not accepted.is_set():  # refused at its first poll (a failed poll raises here)
        await polling
        return None
    # the poller is under way, the answer cached
    mark = len(stream.events)
    sent = now()
    r = await minter.admin.delete(f"users/revoked/tokens/{token_id}")
    answered = now()
    if r.status_code != 204:
        polling.cancel()
        raise RuntimeError(f"DELETE token {token_id}: {r.status_code} {r.text[:200]}")
    await polling
    return sent, answered, polls, await stream.revoked(token_id, after=mark)


def _logged_durations(hub: HubProcess, request: str) -> Figures:
    """Durations the hub logged for requests starting with ``request`` ("... 204 DELETE
    /hub/api/... (who@ip) 5.01ms"): how long the hub took, without the client's side."""
    durations = Figures(request)
    for line in hub.log().splitlines():
        if f" {request}" in line and line.endswith("ms"):
            durations.samples.append(float(line.rpartition(" ")[2].removesuffix("ms")) / 1e3)
    if not durations.samples:
        raise RuntimeError(f"no {request} in the hub's log")
    return durations


async def _plain_still_accepts(
    http: httpx.AsyncClient, minter: Minter, cached: ExternalService, plain_: ExternalService
) -> dict[str, Any]:
    """One token, cached by both services, deleted; what each answers 1 s later."""
    token, token_id = await minter.one("revoked")
    before = {s.name: (await http.get(s.url, headers=_auth(token))).status_code
              for s in (cached, plain_)}  # fmt: skip
    r = await minter.admin.delete(f"users/revoked/tokens/{token_id}")
    r.raise_for_status()
    await asyncio.sleep(1)
    after = {s.name: (await http.get(s.url, headers=_auth(token))).status_code
             for s in (cached, plain_)}  # fmt: skip
    return {"before": before, "after_1s": after, "plain_cache_max_age": 300}


# -- 4. memory per cached answer ----------------------------------------------------------


async def _memory(minter: Minter, hub: HubProcess, token: str, sizes: Sizes) -> dict[str, Any]:
    """Bytes this process holds per answer cached by CachedHubAuth (memory backend)."""
    warm = sizes.answers_warmup
    users = [f"mem{i % 10}" for i in range(sizes.answers + warm)]
    tokens = await minter.many(users)
    config = Config({"AnswerCache": {"max_size": 2 * len(tokens)}})
    auth = CachedHubAuth(api_url=f"{hub.hub_url}/hub/api", api_token=token, config=config)
    try:
        checker = auth.token_checker()
        for t in tokens[:warm]:  # connections, the follower, first-use allocations
            if await checker.check(t) is None:
                raise RuntimeError("a new token was inactive")
        gc.collect()
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            for t in tokens[warm:]:
                if await checker.check(t) is None:
                    raise RuntimeError("a new token was inactive")
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        entries = checker.cache.store.entries()
        answer = await checker.check(tokens[-1])
        stats = dict(checker.counts)
        await checker.close()
    finally:
        auth.close_token_checks()
    return {
        "answers": sizes.answers,
        "bytes_per_answer": held / sizes.answers,
        "entries_in_store": entries,
        "answer_json_bytes": len(httpx.Response(200, json=answer).content),
        "scopes_per_answer": len((answer or {}).get("scopes", ())),
        "hub_calls": stats.get("hub_calls", 0),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(run(True)), indent=2))
