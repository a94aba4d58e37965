"""Suite 13: requests per second right after a restart, against the steady state, and the hub calls it costs.

The whole site of the restart tests (:func:`tests.restarts.site.site`): one ``jupyterhub``
(sqlite), two replicas of ``jupyter-token-cache serve`` (``token-cache``,
``token-cache-b``) and the example ``CachedHubAuth`` service (``whoami``), all on one
redis-server, on loopback. Three sets of ``n`` user tokens (credentials), one per route,
are warmed where they are measured, so that Redis holds the answers and edge entries
and every request of the steady state is a hit:

- the service: ``GET /services/whoami/`` with a credential (a cached introspection answer);
- a replica's notebook route: ``POST notebook`` with a credential (the credential's
  answer and the edge entry holding its notebook token);
- a replica's introspect route: ``POST introspect`` of a credential (its answer), asked
  with the admin service's token (one more answer).

Each scenario measures the routes of one process in the steady state (``steady_passes``
passes over each set, at concurrency 10), restarts the process — SIGTERM and start, or
SIGKILL and start; for the hub, every follower's stream comes back first — and measures
the first pass over each set once the process answers again, then a second pass. A
pass is a fixed number of requests (each credential once), bounded in time. For each
pass: requests per second, latency percentiles, the answers that were not what the
steady state answered (a refusal, a new notebook token), and the hub calls the process
made in it, from its own counters: the service's ``/stats`` (``hub_calls``), the
replica's ``/stats`` (``replica.checks.hub_calls``, its introspections, and
``replica.hub_requests``, the requests it passed to the hub) — against the distinct
entries the pass touched.

What it shows: a process restarted while the hub's event buffer covers its cache's age
gets that history replayed (``?replay=`` the longest an answer is kept) and trusts what it
vouches for, so its first pass costs ~0 hub calls; after a hub restart every follower's
floor moves to the new hub's start, and the first pass re-validates each entry once.
The revocation delay is measured by the services and replicas sections (issue 10's
figures), not here.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.restarts.site import (
    Site,
    accepted_by_service,
    active_at_replica,
    notebook_at_replica,
    site,
)
from tests.servers import RedisServer

from . import progress
from .timing import Figures, machine_cpu_seconds

SERVICE = "whoami"
REPLICA = "token-cache"
#: Routes measured: the service's, and a replica's two.
WHOAMI, NOTEBOOK, INTROSPECT = (
    "service GET whoami",
    "replica POST notebook",
    "replica POST introspect",
)
#: The routes each restarted process answers (the hub: all of them, at both processes).
ROUTES = {
    SERVICE: (WHOAMI,),
    REPLICA: (NOTEBOOK, INTROSPECT),
    "hub": (WHOAMI, NOTEBOOK, INTROSPECT),
}
#: Which process answers a route, and so whose hub calls a pass at it counts.
ANSWERED_BY = {WHOAMI: SERVICE, NOTEBOOK: REPLICA, INTROSPECT: REPLICA}
CONCURRENCY = 10
#: Longest a pass may take (seconds): it stops taking requests then and reports what it did.
PASS_LIMIT = 60.0
#: Users the credentials belong to (each has several).
USERS = 20
#: Token mints in flight at once (the hub is one process on a shared machine).
MINTERS = 8


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.n = 20 if quick else 200
        self.steady_passes = 2 if quick else 5
        self.repeats = 1 if quick else 3
        #: (process, restart) in the order measured; the hub's restarts come last, as they
        #: renew every entry (a process restart must find entries written before it).
        self.scenarios = (
            [(SERVICE, "kill"), (REPLICA, "stop"), ("hub", "stop")]
            if quick
            else [(p, k) for p in (SERVICE, REPLICA, "hub") for k in ("stop", "kill")]
        )


async def run(quick: bool) -> dict[str, Any]:
    """Figures of every scenario, for the report's Restarts section."""
    return await asyncio.to_thread(_run, Sizes(quick))


def _run(sizes: Sizes) -> dict[str, Any]:
    started = time.perf_counter()
    load = {"before": os.getloadavg()}
    busy = machine_cpu_seconds()
    redis = RedisServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="jtc-bench-restarts-") as tmp:
            progress.step("starting a hub, two replicas and the whoami service on one Redis")
            key = Fernet.generate_key().decode()
            with site(Path(tmp) / "site", redis.url, key) as running:
                seconds = {"start (redis, hub, replicas, service)": time.perf_counter() - started}
                results = _measure(running, sizes, seconds)
    finally:
        redis.stop()
    load["after"] = os.getloadavg()
    used, had = (b - a for b, a in zip(machine_cpu_seconds(), busy, strict=True))
    results["load"] = {
        "loadavg_before": load["before"],
        "loadavg_after": load["after"],
        "machine_busy": used / had if had else 0.0,
        "cores": os.cpu_count(),
    }
    return results


def _measure(site: Site, sizes: Sizes, seconds: dict[str, float]) -> dict[str, Any]:
    clock = time.perf_counter()
    progress.step(f"{6 * sizes.n} credentials ({sizes.n} per route, twice) of {USERS} users")
    made = _credentials(site, 6, sizes.n)
    sets = dict(zip(ROUTES["hub"], made[:3], strict=True))
    fresh = dict(zip(ROUTES["hub"], made[3:], strict=True))
    seconds["credentials"] = time.perf_counter() - clock

    routes = Routes(site)
    try:
        clock = time.perf_counter()
        progress.step(f"warming {sizes.n} credentials at each route")
        warm = {route: routes.run(route, sets[route]) for route in sets}
        checked = {route: routes.run(route, sets[route]) for route in sets}
        for route, done in checked.items():
            if done.hits != sizes.n:
                raise RuntimeError(f"warming: {route} answered {done.hits}/{sizes.n} as hits")
        seconds["warming"] = time.perf_counter() - clock
        clock = time.perf_counter()
        misses = _misses(site, routes, fresh)
        seconds["a pass of new credentials"] = time.perf_counter() - clock
        scenarios = []
        for process, kind in sizes.scenarios:
            for repeat in range(sizes.repeats):
                label = f"{process}, {kind} and start ({repeat + 1}/{sizes.repeats})"
                progress.step(label)
                clock = time.perf_counter()
                scenarios.append(_scenario(site, routes, sets, process, kind, sizes))
                seconds[label] = time.perf_counter() - clock
    finally:
        routes.close()
    return {
        "setup": {
            "credentials_per_route": sizes.n,
            "users": USERS,
            "concurrency": CONCURRENCY,
            "steady_passes": sizes.steady_passes,
            "repeats": sizes.repeats,
            "pass_limit_s": PASS_LIMIT,
        },
        "warming": {route: w.summary() for route, w in warm.items()},
        "misses": misses,
        "scenarios": scenarios,
        "summary": _summary(scenarios, misses),
        "seconds": seconds,
    }


def _credentials(site: Site, sets: int, n: int) -> list[list[str]]:
    """``sets`` lists of ``n`` new API tokens of ``USERS`` users (made if need be)."""
    with site.admin() as admin:
        for i in range(USERS):
            r = admin.post(f"users/restart{i}")
            if r.status_code not in (201, 409):
                raise RuntimeError(f"cannot create a user: {r.status_code} {r.text[:200]}")
    clients = [site.admin() for _ in range(MINTERS)]
    numbers = iter(range(sets * n))
    lock = threading.Lock()
    made: list[str] = []

    def mint(admin: httpx.Client) -> None:
        while True:
            with lock:
                i = next(numbers, None)
            if i is None:
                return
            r = admin.post(f"users/restart{i % USERS}/tokens", json={"note": "bench"})
            if r.status_code != 201:
                raise RuntimeError(f"cannot mint a token: {r.status_code} {r.text[:200]}")
            made.append(str(r.json()["token"]))

    try:
        with ThreadPoolExecutor(MINTERS) as pool:
            for future in [pool.submit(mint, admin) for admin in clients]:
                future.result()
    finally:
        for admin in clients:
            admin.close()
    return [made[k * n : (k + 1) * n] for k in range(sets)]


@dataclass
class Pass:
    """One pass over a route's credentials: how long, each request's latency, what came back."""

    requests: int
    seconds: float
    latencies: list[float]
    #: Answers as in the steady state: accepted, active, or the notebook token warmed.
    hits: int
    #: Refusals (a 401/403, an inactive answer): never expected here.
    refused: int
    #: Notebook answers with another token than the one warmed (the hub minted anew).
    new_tokens: int
    #: The share of the machine busy during the pass (other users' work included).
    machine_busy: float
    hub_calls: dict[str, int] | None = None
    distinct_entries: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        figures = Figures("", self.latencies)
        found: dict[str, Any] = {
            "requests": self.requests,
            "seconds": self.seconds,
            "rps": self.rps,
            **{f"p{p}_ms": figures.percentile(p) * 1e3 for p in (50, 99)},
            "max_ms": max(self.latencies) * 1e3,
            "hits": self.hits,
            "refused": self.refused,
            "new_tokens": self.new_tokens,
            "machine_busy": self.machine_busy,
        }
        if self.hub_calls is not None:
            total = sum(self.hub_calls.values())
            found |= {
                "hub_calls": self.hub_calls,
                "hub_calls_total": total,
                "distinct_entries": self.distinct_entries,
                "hub_calls_per_entry": total / self.distinct_entries,
            }
        return found


class Routes:
    """Passes over a set of credentials at one route, at concurrency 10.

    The 10 workers keep a client each from pass to pass, as callers keep their
    connections: a restarted process is reached on new ones (a pool drops a connection
    its server closed), a process that stayed up on the same ones.
    """

    def __init__(self, site: Site) -> None:
        self.site = site
        #: The notebook token each credential was given when warmed.
        self.tokens: dict[str, str] = {}
        self.ops: dict[str, Callable[[httpx.Client, str], tuple[bool, bool]]] = {
            WHOAMI: self._whoami,
            NOTEBOOK: self._notebook,
            INTROSPECT: self._introspect,
        }
        self.clients = [httpx.Client(timeout=30) for _ in range(CONCURRENCY)]
        self.pool = ThreadPoolExecutor(CONCURRENCY)

    def close(self) -> None:
        self.pool.shutdown()
        for client in self.clients:
            client.close()

    def _whoami(self, client: httpx.Client, credential: str) -> tuple[bool, bool]:
        return accepted_by_service(self.site, SERVICE, credential, client), False

    def _notebook(self, client: httpx.Client, credential: str) -> tuple[bool, bool]:
        answer = notebook_at_replica(self.site, REPLICA, credential, client)
        if answer is None:
            return False, False
        known = self.tokens.setdefault(credential, answer["token"])
        if known != answer["token"]:
            self.tokens[credential] = answer["token"]
            return True, True
        return True, False

    def _introspect(self, client: httpx.Client, credential: str) -> tuple[bool, bool]:
        return active_at_replica(self.site, REPLICA, credential, client), False

    def run(self, route: str, credentials: list[str], passes: int = 1) -> Pass:
        """``passes`` passes over ``credentials`` at ``route``, as one burst."""
        op = self.ops[route]
        work = iter(itertools.chain.from_iterable(itertools.repeat(credentials, passes)))
        lock = threading.Lock()
        latencies: list[float] = []
        outcomes = {"hits": 0, "refused": 0, "new_tokens": 0}
        deadline = time.perf_counter() + PASS_LIMIT

        def worker(client: httpx.Client) -> None:
            while time.perf_counter() < deadline:
                with lock:
                    credential = next(work, None)
                if credential is None:
                    return
                sent = time.perf_counter()
                ok, new = op(client, credential)
                took = time.perf_counter() - sent
                outcome = "refused" if not ok else "new_tokens" if new else "hits"
                with lock:
                    latencies.append(took)
                    outcomes[outcome] += 1

        busy = machine_cpu_seconds()
        started = time.perf_counter()
        for future in [self.pool.submit(worker, client) for client in self.clients]:
            future.result()
        took = time.perf_counter() - started
        used, had = (b - a for b, a in zip(machine_cpu_seconds(), busy, strict=True))
        return Pass(
            len(latencies),
            took,
            latencies,
            machine_busy=used / had if had else 0.0,
            **outcomes,
        )


def hub_calls(site: Site, process: str) -> dict[str, int]:
    """What ``process`` has asked the hub since it started, from its own counters.

    A service: its introspections. A replica: its caller checks (introspections) and the
    requests it passed to the hub (``POST /notebook``...), but not the ``GET /stats`` by
    which these counters are read.
    """
    if process in site.services:
        return {"introspections": int(site.services[process].stats().get("hub_calls", 0))}
    r = httpx.get(
        f"{site.replicas[process].url}/stats",
        headers={"Authorization": f"token {site.hub.service_token}"},
        timeout=10,
    )
    r.raise_for_status()
    replica = r.json()["replica"]
    passed = sum(n for route, n in replica["hub_requests"].items() if route != "GET /stats")
    return {"introspections": int(replica["checks"].get("hub_calls", 0)), "passed on": passed}


def _distinct(route: str, n: int) -> int:
    """The cached entries a pass over ``n`` credentials at ``route`` relies on.

    A notebook request: the credential's answer and its edge entry. An introspection:
    the token's answer, and the caller's (the admin service's token, one for all).
    """
    return {WHOAMI: n, NOTEBOOK: 2 * n, INTROSPECT: n + 1}[route]


def _restart(site: Site, process: str, kind: str) -> dict[str, float]:
    """Stop (SIGTERM) or kill (SIGKILL) ``process`` and start it: seconds until it was gone,
    and then until it answered again (for the hub: until every follower's stream was back)."""
    part = site.process(process)
    started = time.perf_counter()
    part.stop() if kind == "stop" else part.kill()
    gone = time.perf_counter()
    part.start()
    if process == "hub":
        site.wait_connected()
    return {"down_s": gone - started, "back_after_s": time.perf_counter() - gone}


def _counted(site: Site, routes: Routes, route: str, credentials: list[str]) -> Pass:
    """A pass, with the hub calls the process answering ``route`` made in it."""
    who = ANSWERED_BY[route]
    before = hub_calls(site, who)
    done = routes.run(route, credentials)
    later = hub_calls(site, who)
    done.hub_calls = {k: later[k] - before[k] for k in later}
    done.distinct_entries = _distinct(route, len(credentials))
    return done


def _misses(site: Site, routes: Routes, fresh: dict[str, list[str]]) -> dict[str, Any]:
    """For scale, in the steady state: a pass of new credentials at each route (every entry a
    miss, asked of the hub), what a cache that trusts nothing it finds costs."""
    progress.step("a pass of new credentials at each route (every entry a miss)")
    return {route: _counted(site, routes, route, fresh[route]).summary() for route in fresh}


def _scenario(
    site: Site,
    routes: Routes,
    sets: dict[str, list[str]],
    process: str,
    kind: str,
    sizes: Sizes,
) -> dict[str, Any]:
    measured = ROUTES[process]
    steady = {route: routes.run(route, sets[route], sizes.steady_passes) for route in measured}
    back = _restart(site, process, kind)
    if process == "hub":
        # each follower clears the shared answers when its stream says events were lost:
        # let those clears land before the first pass, so that none falls within it
        time.sleep(0.5)
    after: dict[str, list[Pass]] = {route: [] for route in measured}
    for _ in range(2):  # the first pass over each route, then the second
        for route in measured:
            after[route].append(_counted(site, routes, route, sets[route]))
    found: dict[str, Any] = {"process": process, "restart": kind, **back, "routes": {}}
    for route in measured:
        first, second = after[route]
        base = steady[route].rps
        found["routes"][route] = {
            "steady": steady[route].summary(),
            "first": first.summary() | {"ratio": first.rps / base},
            "second": second.summary() | {"ratio": second.rps / base},
        }
    return found


def _summary(scenarios: list[dict[str, Any]], misses: dict[str, Any]) -> list[dict[str, Any]]:
    """Per process, restart and route: the figures of the repeat whose first pass had the
    median ratio to its steady state (one run's figures side by side), the range of that
    ratio over the repeats, and the most hub calls any repeat made."""
    rows: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for s in scenarios:
        for route, figures in s["routes"].items():
            rows.setdefault((s["process"], s["restart"], route), []).append(
                figures | {k: s[k] for k in ("down_s", "back_after_s")}
            )
    summary = []
    for (process, kind, route), runs in rows.items():
        runs.sort(key=lambda r: r["first"]["ratio"])
        mid = runs[(len(runs) - 1) // 2]
        first, second, steady = mid["first"], mid["second"], mid["steady"]
        summary.append(
            {
                "process": process,
                "restart": kind,
                "route": route,
                "repeats": len(runs),
                "down_s": mid["down_s"],
                "back_after_s": mid["back_after_s"],
                "steady_rps": steady["rps"],
                "first_rps": first["rps"],
                "first_ratio": first["ratio"],
                "first_ratio_range": [runs[0]["first"]["ratio"], runs[-1]["first"]["ratio"]],
                "miss_rps": misses[route]["rps"],
                "first_over_miss": first["rps"] / misses[route]["rps"],
                "second_rps": second["rps"],
                "second_ratio": second["ratio"],
                "steady_p99_ms": steady["p99_ms"],
                "first_p99_ms": first["p99_ms"],
                "first_hub_calls": max(r["first"]["hub_calls_total"] for r in runs),
                "second_hub_calls": max(r["second"]["hub_calls_total"] for r in runs),
                "distinct_entries": first["distinct_entries"],
                "first_hub_calls_per_entry": max(r["first"]["hub_calls_per_entry"] for r in runs),
                "refused": sum(
                    r[p]["refused"] for r in runs for p in ("steady", "first", "second")
                ),
                "new_tokens_first": max(r["first"]["new_tokens"] for r in runs),
            }
        )
    return summary


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(run(True)), indent=2))
