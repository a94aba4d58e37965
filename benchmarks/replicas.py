"""Suite 12: the replicated mode (``jupyter-token-cache serve``) against the in-hub mode.

One ``jupyterhub`` process (sqlite, configurable-http-proxy) with two replicas of
``jupyter-token-cache serve`` as external services (``token-cache`` and
``token-cache-b``, sharing one redis-server), as :func:`tests.serve.replicas.replicated_hub`
starts them for the end-to-end tests; all on loopback:

1. throughput of cache hits, ``POST notebook`` with the credentials of many users, each
   warmed first (a mint, then every replica's and the hub's first look) so that every
   measured request is a hit. The load comes from ``wrk`` (a C program, so that the load
   generator is not the bottleneck a Python one would be) with a Lua script written for
   the run: fixed connections, a fixed duration, the credentials in turn. Six loads,
   alternating round by round: one replica and two replicas (requests alternating
   between them), through configurable-http-proxy and straight to the replicas' ports
   (as an external load balancer would: one wrk thread per replica), and the in-hub
   route ``/hub/api/token-cache/notebook`` through the proxy and at the hub's own port.
   For each: requests/s, latency percentiles, answers that were not a 2xx or not a hit,
   and the CPU share of every process in the window (/proc/<pid>/stat; wrk's from this
   process's ``RUSAGE_CHILDREN``, as wrk is gone when its figures are read) and of the
   whole machine (/proc/stat: other users' load shows there);
2. hub requests: what the hub logged (:func:`tests.serve.replicas.hub_requests`) during
   the measured loads at the replicas, per 10,000 hits; and for fresh credentials, what
   one first request at each replica costs the hub (one mint, one introspection);
3. revocation delay at both replicas: a session's token served by both, ``DELETE
   /hub/api/users/{name}/tokens/{id}`` at the hub, while a poller per replica asks it
   straight at its port, one request after another; the delay runs from the DELETE
   (sent, and answered) to the moment both replicas have answered with another token.
   Tokens are compared, not ids: the hub hands a deleted token's id to the next one.
   A second series has the pollers introspect the token at their replica (``POST
   introspect``, with the replica's own token) until it is inactive: the refusal a
   service sees, with no new token minted, like CachedHubAuth's in suite 10.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.hubprocess import HubProcess
from tests.serve.replicas import Replica, hub_requests, hub_stats, replicated_hub, user_token
from tests.servers import RedisServer

from . import progress
from .services import REVOCATION_TARGET
from .timing import Figures, cpu_seconds, machine_cpu_seconds

PROXY_1 = "through the proxy, 1 replica"
PROXY_2 = "through the proxy, 2 replicas"
PROXY_HUB = "through the proxy, in-hub route"
DIRECT_1 = "direct, 1 replica"
DIRECT_2 = "direct, 2 replicas"
DIRECT_HUB = "direct, in-hub route (the hub's port)"
#: The loads at the replicas: their hub requests are what the replicated mode saves.
AT_REPLICAS = (PROXY_1, PROXY_2, DIRECT_1, DIRECT_2)
HUB_ROUTE = "/hub/api/token-cache/notebook"
#: wrk's threads: one per replica when it goes straight to two of them.
THREADS = 2
#: A token's id in a hub route (``/hub/api/users/{name}/tokens/a51``), for counting by route.
TOKEN_ID = re.compile(r"/tokens/[^/]+$")
#: Longest wait (seconds) for a replica to stop serving a revoked token.
REVOCATION_DEADLINE = 5.0


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.users, self.fresh = (20, 3) if quick else (50, 20)
        self.connections = 16
        self.seconds, self.rounds, self.warmup_seconds = (2, 1, 0) if quick else (10, 3, 1)
        self.revocations, self.revocation_warmup = (10, 1) if quick else (200, 5)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


async def run(quick: bool) -> dict[str, Any]:
    """Figures of the three measurements, for the report's Replicated mode section."""
    wrk = shutil.which("wrk")
    if wrk is None:
        reason = "wrk not found (apt-get install wrk; ./run bench installs it)"
        if _in_ci():
            raise RuntimeError(f"{reason} - required in CI")
        progress.step(f"{reason}: section skipped")
        return {"skipped": reason}
    sizes = Sizes(quick)
    started = time.perf_counter()
    redis = RedisServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="jtc-bench-replicas-") as tmp:
            workdir = Path(tmp)
            key = Fernet.generate_key().decode()
            progress.step("starting a hub, its proxy and two replicas")
            with replicated_hub(workdir / "hub", redis.url, key, "bench") as (hub, replicas):
                seconds = {"start (redis, hub, replicas)": time.perf_counter() - started}
                return await _measure(wrk, workdir, hub, replicas, redis, sizes, seconds)
    finally:
        redis.stop()


async def _measure(
    wrk: str,
    workdir: Path,
    hub: HubProcess,
    replicas: list[Replica],
    redis: RedisServer,
    sizes: Sizes,
    seconds: dict[str, float],
) -> dict[str, Any]:
    clock = time.perf_counter()
    progress.step(f"a credential for each of {sizes.users} users")
    credentials = [user_token(hub, f"load{i}")["token"] for i in range(sizes.users)]
    # the wrk script reads them from a file in this private directory, removed afterwards
    (workdir / "credentials").write_text("\n".join(credentials) + "\n")
    seconds["credentials"] = time.perf_counter() - clock

    clock = time.perf_counter()
    mints = _first_requests(hub, replicas, sizes)
    seconds["hub requests per mint"] = time.perf_counter() - clock

    clock = time.perf_counter()
    loader = Loader(wrk, workdir, _pids(hub, replicas, redis), sizes)
    loads = _loads(hub, replicas)
    throughput = _throughput(loader, loads, hub, replicas, credentials, sizes)
    seconds["throughput"] = time.perf_counter() - clock

    clock = time.perf_counter()
    revocation = await _revocation(hub, replicas, sizes)
    seconds["revocation"] = time.perf_counter() - clock

    per_hits = _per_hits(throughput)
    return {
        "setup": {
            "users": sizes.users,
            "connections": sizes.connections,
            "threads": THREADS,
            "seconds_per_run": sizes.seconds,
            "rounds": sizes.rounds,
            "cores": os.cpu_count(),
            "wrk": _wrk_version(wrk),
        },
        "throughput": throughput,
        "ratios": _ratios(throughput),
        "limits": _limits(throughput),
        "hub_requests": {"hits": per_hits, "mints": mints},
        "revocation": revocation,
        "seconds": seconds,
    }


def _wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    return (done.stdout + done.stderr).split("\n", 1)[0].split(" [")[0].strip()


def _pids(hub: HubProcess, replicas: list[Replica], redis: RedisServer) -> dict[str, int]:
    """The processes whose CPU is measured, by the name the report gives them."""
    assert hub.process is not None and redis.process is not None
    pids = {"proxy": _proxy_pid(hub.process.pid)}
    for replica in replicas:
        assert replica.process is not None
        pids[replica.name] = replica.process.pid
    return pids | {"redis": redis.process.pid, "hub": hub.process.pid}


def _proxy_pid(hub: int) -> int:
    """configurable-http-proxy: the hub's child process running it (node)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        if parent == hub and b"configurable-http-proxy" in command:
            return int(entry.name)
    raise RuntimeError("configurable-http-proxy is not a child of the hub process")


# -- 1. throughput ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where one wrk thread connects and the paths it asks in turn."""

    port: int
    paths: tuple[str, ...]


def _direct(replica: Replica) -> str:
    return f"/services/{replica.name}/notebook"


def _loads(hub: HubProcess, replicas: list[Replica]) -> dict[str, list[Target]]:
    """Each load's wrk threads, in the order the rounds run them."""
    a, b = replicas
    proxy, hub_port = _port(hub.url), _port(hub.hub_url)
    return {
        PROXY_1: [Target(proxy, (_direct(a),))],
        PROXY_2: [Target(proxy, (_direct(a), _direct(b)))],
        PROXY_HUB: [Target(proxy, (HUB_ROUTE,))],
        DIRECT_1: [Target(a.port, (_direct(a),))],
        DIRECT_2: [Target(a.port, (_direct(a),)), Target(b.port, (_direct(b),))],
        DIRECT_HUB: [Target(hub_port, (HUB_ROUTE,))],
    }


def _port(url: str) -> int:
    return int(url.rpartition(":")[2])


#: The wrk script after the run's settings (``targets``, ``credentials_file``). wrk runs
#: it in each thread (``init``, ``request``, ``response``) and once more for ``setup``,
#: which gives each thread its target, and ``done``, which prints one line for
#: :meth:`Loader.run`. Requests are prepared once per thread; the credential changes on
#: every request, the path too when there are two, shifted by one every time round the
#: credentials, so that each credential goes to each replica.
LUA = """
local threads, count = {}, 0

function setup(thread)
  local target = targets[count % #targets + 1]
  thread.addr = wrk.lookup("127.0.0.1", target.port)[1]
  thread:set("host", "127.0.0.1:" .. target.port)
  thread:set("paths", target.paths)
  thread:set("sent", count * 7)
  count = count + 1
  table.insert(threads, thread)
end

function init(args)
  local credentials = {}
  for line in io.lines(credentials_file) do
    if line ~= "" then credentials[#credentials + 1] = line end
  end
  users, prepared, non2xx, uncached = #credentials, {}, 0, 0
  for p, path in ipairs(paths) do
    prepared[p] = {}
    for c, credential in ipairs(credentials) do
      local headers = {Host = host, Authorization = "token " .. credential}
      prepared[p][c] = wrk.format("POST", path, headers, "")
    end
  end
end

function request()
  sent = sent + 1
  local turn = sent + math.floor(sent / users)
  return prepared[turn % #paths + 1][sent % users + 1]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif not string.find(body, '"cached":%s*true') then
    uncached = uncached + 1
  end
end

function done(summary, latency, requests)
  local bad, missed = 0, 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    missed = missed + thread:get("uncached")
  end
  local e = summary.errors
  io.write(string.format("jtc-wrk %d %d %d %d %d %d %d %d %d %d %d %d\\n",
    summary.duration, summary.requests, e.connect, e.read, e.write, e.timeout,
    bad, missed, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""

FIELDS = ("duration_us", "requests", "connect_errors", "read_errors", "write_errors",
          "timeouts", "non_2xx", "not_cached", "p50_us", "p90_us", "p99_us", "max_us")  # fmt: skip


class CpuWindow:
    """CPU seconds of wrk, of the named processes and of the whole machine, while open.

    wrk has exited (and been waited for) when the window closes, so its seconds are the
    growth of this process's ``RUSAGE_CHILDREN``: no other child ends meanwhile.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def _read(self) -> dict[str, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy, _ = machine_cpu_seconds()
        return {
            "wrk": children.ru_utime + children.ru_stime,
            **{name: cpu_seconds(pid) for name, pid in self.pids.items()},
            "machine": busy,
        }

    def __enter__(self) -> CpuWindow:
        self._start, self._wall = self._read(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        end = self._read()
        self.seconds = {name: end[name] - start for name, start in self._start.items()}


class Loader:
    """wrk runs with the run's credentials, each in a CPU window."""

    def __init__(self, wrk: str, workdir: Path, pids: dict[str, int], sizes: Sizes) -> None:
        self.wrk, self.workdir, self.pids, self.sizes = wrk, workdir, pids, sizes

    def run(self, targets: list[Target], seconds: int) -> dict[str, Any]:
        """One wrk run of ``seconds`` at ``targets``: its figures and the CPU seconds spent."""
        settings = "local targets = {\n" + "".join(
            f"  {{port = {t.port}, paths = {{{', '.join(json.dumps(p) for p in t.paths)}}}}},\n"
            for t in targets
        )
        settings += (
            f"}}\nlocal credentials_file = {json.dumps(str(self.workdir / 'credentials'))}\n"
        )
        script = self.workdir / "load.lua"
        script.write_text(settings + LUA)
        command = [self.wrk, "--latency", f"--threads={THREADS}",
                   f"--connections={self.sizes.connections}", f"--duration={seconds}s",
                   f"--script={script}", f"http://127.0.0.1:{targets[0].port}/"]  # fmt: skip
        with CpuWindow(self.pids) as cpu:
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
        line = next((x for x in done.stdout.splitlines() if x.startswith("jtc-wrk ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stderr[-2000:]}")
        figures: dict[str, Any] = dict(zip(FIELDS, map(int, line.split()[1:]), strict=True))
        return figures | {"cpu_seconds": cpu.seconds, "wall": cpu.wall}


def _throughput(
    loader: Loader,
    loads: dict[str, list[Target]],
    hub: HubProcess,
    replicas: list[Replica],
    credentials: list[str],
    sizes: Sizes,
) -> dict[str, Any]:
    """Every load once per round, in turn; each credential's entries looked at before a round."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in loads}
    _warm(hub, replicas, credentials)
    if sizes.warmup_seconds:
        progress.step(f"warm-up: each load for {sizes.warmup_seconds} s")
        for targets in loads.values():
            loader.run(targets, sizes.warmup_seconds)
    for round_ in range(sizes.rounds):
        if round_:
            _warm(hub, replicas, credentials)
        progress.step(
            f"round {round_ + 1}/{sizes.rounds}: {len(loads)} loads of {sizes.seconds} s, "
            f"wrk, {sizes.connections} connections"
        )
        for name, targets in loads.items():
            seen = len(hub_requests(hub)) if name in AT_REPLICAS else 0
            figures = loader.run(targets, sizes.seconds)
            if name in AT_REPLICAS:
                asked = hub_requests(hub)[seen:]
                figures["hub_requests"] = dict(Counter(f"{m} {p}" for m, p in asked))
            runs[name].append(figures)
    return {name: _summary(rounds) for name, rounds in runs.items()}


def _warm(hub: HubProcess, replicas: list[Replica], credentials: list[str]) -> None:
    """Each credential's notebook token, asked at each replica and at the hub, twice.

    The first pass makes the entries (a mint, each replica's introspection of the
    credential) or, before a later round, renews what ``CachedHubAuth.cache_ttl`` (300 s)
    has let age, so that no measured request waits for the hub; the second checks that
    all are hits.
    """
    urls = [f"http://127.0.0.1:{r.port}{_direct(r)}" for r in replicas]
    urls.append(f"{hub.hub_url}{HUB_ROUTE}")
    progress.step(f"warming {len(credentials)} credentials at both replicas and the hub")
    with httpx.Client(timeout=30) as http:
        for check in (False, True):
            for credential in credentials:
                for url in urls:
                    r = http.post(url, headers={"Authorization": f"token {credential}"})
                    if r.status_code != 200:
                        raise RuntimeError(f"warming: {r.status_code} {r.text[:200]}")
                    if check and r.json().get("cached") is not True:
                        raise RuntimeError(f"warming: a second request at {url} was no hit")


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """A load's rounds together: requests over seconds, the rounds' median percentiles,
    sums of the counts, CPU seconds over wall seconds (of one core)."""
    requests = sum(r["requests"] for r in rounds)
    duration = sum(r["duration_us"] for r in rounds) / 1e6
    wall = sum(r["wall"] for r in rounds)
    cpu: Counter[str] = Counter()
    for r in rounds:
        cpu.update(r["cpu_seconds"])
    share = {name: cpu[name] / wall for name in rounds[0]["cpu_seconds"]}
    measured = sum(v for name, v in share.items() if name != "machine")
    summary: dict[str, Any] = {
        "requests": requests,
        "seconds": duration,
        "rps": requests / duration,
        **{k: statistics.median(r[k] for r in rounds) for k in ("p50_us", "p90_us", "p99_us")},
        "max_us": max(r["max_us"] for r in rounds),
        **{k: sum(r[k] for r in rounds) for k in FIELDS[2:8]},
        "cpu_share": share | {"measured processes": measured},
        "rounds": [{k: v for k, v in r.items() if k != "cpu_seconds"} for r in rounds],
    }
    if "hub_requests" in rounds[0]:
        asked: Counter[str] = Counter()
        for r in rounds:
            asked.update(r["hub_requests"])
        summary["hub_requests"] = dict(asked)
    return summary


def _ratios(throughput: dict[str, Any]) -> list[dict[str, Any]]:
    rps = {name: t["rps"] for name, t in throughput.items()}
    pairs = [
        ("2 replicas / 1 replica, through the proxy", PROXY_2, PROXY_1),
        ("2 replicas / 1 replica, direct", DIRECT_2, DIRECT_1),
        ("2 replicas / in-hub route, through the proxy", PROXY_2, PROXY_HUB),
        ("2 replicas / in-hub route, direct", DIRECT_2, DIRECT_HUB),
        ("1 replica / in-hub route, direct", DIRECT_1, DIRECT_HUB),
    ]
    return [{"ratio": label, "value": rps[ours] / rps[base]} for label, ours, base in pairs]


def _limits(throughput: dict[str, Any]) -> dict[str, Any]:
    """What the 2-replica loads used of the machine, and the CPU time a request costs each
    process (milliseconds), from the load where that process does the most of the work."""

    def per_request(load: str, process: str) -> float:
        return throughput[load]["cpu_share"][process] / throughput[load]["rps"] * 1e3

    keep = ("measured processes", "machine")
    other = [t["cpu_share"]["machine"] - t["cpu_share"]["measured processes"]
             for t in throughput.values()]  # fmt: skip
    return {
        "other_work": {"mean": statistics.fmean(other), "max": max(other)},
        "two_replicas": {
            name: {k: throughput[name]["cpu_share"][k] for k in keep}
            for name in (PROXY_2, DIRECT_2)
        },
        "cpu_ms_per_request": {
            "proxy": per_request(PROXY_2, "proxy"),
            "a replica": per_request(DIRECT_1, "token-cache"),
            "redis": per_request(DIRECT_2, "redis"),
            "wrk": per_request(DIRECT_2, "wrk"),
            "the hub, in-hub route": per_request(DIRECT_HUB, "hub"),
        },
    }


# -- 2. hub requests ----------------------------------------------------------------------


def _per_hits(throughput: dict[str, Any]) -> dict[str, Any]:
    """Hub requests during the measured loads at the replicas, per 10,000 hits."""
    hits = sum(throughput[n]["requests"] - throughput[n]["non_2xx"] - throughput[n]["not_cached"]
               for n in AT_REPLICAS)  # fmt: skip
    asked: Counter[str] = Counter()
    for name in AT_REPLICAS:
        asked.update(throughput[name]["hub_requests"])
    total = sum(asked.values())
    return {"hits": hits, "hub_requests": total, "by_route": dict(asked),
            "per_10000": total * 10_000 / hits if hits else None}  # fmt: skip


def _first_requests(hub: HubProcess, replicas: list[Replica], sizes: Sizes) -> dict[str, Any]:
    """What a fresh credential's first notebook request, then one at the other replica,
    cost the hub (the credentials are made before counting)."""
    progress.step(f"hub requests for {sizes.fresh} fresh credentials (each replica asked once)")
    fresh = [user_token(hub, f"fresh{i}")["token"] for i in range(sizes.fresh)]
    mints, seen = hub_stats(hub)["mints"], len(hub_requests(hub))
    tokens = set()
    with httpx.Client(timeout=30) as http:
        for i, credential in enumerate(fresh):
            answers = []
            for replica in replicas[i % 2 :] + replicas[: i % 2]:  # each replica first in turn
                url = f"http://127.0.0.1:{replica.port}{_direct(replica)}"
                r = http.post(url, headers={"Authorization": f"token {credential}"})
                if r.status_code != 200:
                    raise RuntimeError(f"a fresh credential: {r.status_code} {r.text[:200]}")
                answers.append(r.json()["token"])
            if len(set(answers)) != 1:
                raise RuntimeError("the two replicas answered one session with two tokens")
            tokens.add(answers[0])
    asked = Counter(f"{m} {TOKEN_ID.sub('/tokens/{id}', p)}" for m, p in hub_requests(hub)[seen:])
    made = hub_stats(hub)["mints"] - mints
    total = sum(asked.values())
    return {
        "credentials": sizes.fresh,
        "tokens": len(tokens),
        "hub_mints": made,
        "hub_requests": total,
        "by_route": dict(asked),
        "per_mint": total / made if made else None,
    }


# -- 3. revocation delay ------------------------------------------------------------------


@dataclass
class Revoked:
    """One revocation: when the DELETE was sent and answered, when each replica refused,
    how long each refusing answer took (a miss: the replica asked the hub), and when each
    replica's last answer still carrying the token came back."""

    sent: float
    answered: float
    refused: list[float]
    refusing: list[float]
    last_served: list[float]


async def _revocation(hub: HubProcess, replicas: list[Replica], sizes: Sizes) -> dict[str, Any]:
    """Both series: the notebook route (a refusal is a new token) and introspection."""
    served = await _revocations(hub, replicas, sizes, introspect=False)
    inactive = await _revocations(hub, replicas, sizes, introspect=True)
    keys = (
        "from_sent",
        "from_answered",
        "between_replicas",
        "refused_before_answer",
        "served_after_sent",
        "poll_round_trip",
        "refusing_round_trip",
        "met",
        "hub_requests_per_revocation",
        "valid_refused",
    )
    return served | {"introspect": {k: inactive[k] for k in keys}}


async def _revocations(
    hub: HubProcess, replicas: list[Replica], sizes: Sizes, *, introspect: bool
) -> dict[str, Any]:
    total = sizes.revocation_warmup + sizes.revocations
    what = "introspection" if introspect else "notebook token"
    progress.step(f"revocation delay at both replicas ({what}): {total} revocations")
    user = "introspected" if introspect else "revoker"
    credential = user_token(hub, user)["token"]
    urls = [f"http://127.0.0.1:{r.port}{_direct(r)}" for r in replicas]
    introspectors = [r.token for r in replicas] if introspect else None
    deletes, polls, samples = [], [], []
    seen = 0
    async with (
        httpx.AsyncClient(timeout=10) as http,
        httpx.AsyncClient(base_url=f"{hub.hub_url}/hub/api/", timeout=10,
                          headers={"Authorization": f"token {hub.service_token}"}) as admin,
        httpx.AsyncClient(timeout=10) as poller_a,
        httpx.AsyncClient(timeout=10) as poller_b,
    ):  # fmt: skip
        i = false_refusals = 0
        while i < total:
            if i == sizes.revocation_warmup:  # the credential's introspection and first mint done
                seen = len(hub_requests(hub))
            one = await _revoke(http, admin, [poller_a, poller_b], urls, credential, polls,
                                user, introspectors)  # fmt: skip
            if one is None:  # refused before its DELETE was sent: an outage, not a delay
                false_refusals += 1
                if false_refusals > sizes.revocations:
                    raise RuntimeError(f"{false_refusals} valid tokens refused")
                continue
            i += 1
            if i > sizes.revocation_warmup:
                samples.append(one)
                deletes.append(one.answered - one.sent)
    asked = Counter(f"{m} {TOKEN_ID.sub('/tokens/{id}', p)}" for m, p in hub_requests(hub)[seen:])
    both = [max(s.refused) for s in samples]
    from_sent = [b - s.sent for b, s in zip(both, samples, strict=True)]
    from_answered = [b - s.answered for b, s in zip(both, samples, strict=True)]
    spread = [max(s.refused) - min(s.refused) for s in samples]
    refusing = [t for s in samples for t in s.refusing]
    # how long after the DELETE was sent a caller could still get the token (0: not at all)
    exposed = [max(0.0, max(s.last_served) - s.sent) for s in samples]
    p99 = Figures("", from_sent).percentile(99)
    return {
        "n": sizes.revocations,
        "warmup": sizes.revocation_warmup,
        "from_sent": _percentiles(from_sent),
        "from_answered": _percentiles(from_answered),
        "between_replicas": _percentiles(spread),
        "served_after_sent": _percentiles(exposed),
        "refused_before_answer": sum(1 for s in from_answered if s <= 0),
        # a token refused at a replica before its DELETE was sent (rounds not measured)
        "valid_refused": false_refusals,
        "delete_round_trip": _percentiles(deletes),
        "poll_round_trip": _percentiles(polls),
        "refusing_round_trip": _percentiles(refusing),
        "target_p99_ms": REVOCATION_TARGET * 1e3,
        "met": p99 <= REVOCATION_TARGET,
        "cached_hub_auth": _cached_hub_auth(),
        # its DELETE, and the new token's mint
        "hub_requests_per_revocation": {route: n / sizes.revocations for route, n in asked.items()},
    }


async def _revoke(
    http: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    pollers: list[httpx.AsyncClient],
    urls: list[str],
    credential: str,
    polls: list[float],
    user: str,
    introspectors: list[str] | None = None,
) -> Revoked | None:
    """The session's token from both replicas, pollers under way, DELETE; until both refuse.

    With ``introspectors`` (the replicas' own tokens), each poller introspects the token
    at its replica instead, until the answer is inactive: what a service checking tokens
    through the replicas sees, with no new token to mint. None when a replica refused
    the token before the DELETE was sent (a valid token refused).
    """
    headers = {"Authorization": f"token {credential}"}
    served = []
    for url in urls:
        r = await http.post(url, headers=headers)
        if r.status_code != 200:
            raise RuntimeError(f"the session's token: {r.status_code} {r.text[:200]}")
        served.append(r.json())
    if served[0]["token"] != served[1]["token"]:
        raise RuntimeError("the two replicas served one session two tokens")
    token, token_id = served[0]["token"], served[0]["id"]
    serving = [asyncio.Event() for _ in urls]

    async def poll(k: int) -> tuple[float, float]:
        """Ask replica ``k`` until it answers with another token: when that answer came,
        how long it took, and when the last answer with the token came (the polls that
        got the token are in ``polls``)."""
        deadline = time.perf_counter() + REVOCATION_DEADLINE
        last = 0.0
        while time.perf_counter() < deadline:
            asked = time.perf_counter()
            if introspectors is None:
                r = await pollers[k].post(urls[k], headers=headers)
                ended = r.status_code != 200 or r.json().get("token") != token
            else:
                r = await pollers[k].post(
                    urls[k].rsplit("/", 1)[0] + "/introspect", json={"token": token},
                    headers={"Authorization": f"token {introspectors[k]}"},
                )  # fmt: skip
                ended = r.status_code != 200 or r.json().get("active") is not True
            answered = time.perf_counter()
            if ended:
                return answered, answered - asked, last
            last = answered
            polls.append(answered - asked)
            serving[k].set()
        raise RuntimeError(f"{urls[k]} still served a revoked token after {REVOCATION_DEADLINE} s")

    polling = [asyncio.ensure_future(poll(k)) for k in range(len(urls))]
    both = asyncio.ensure_future(asyncio.gather(*(e.wait() for e in serving)))
    try:
        # both replicas serving the token, or one refusing it already (a valid token
        # refused: the round goes on, DELETE included, and is not measured)
        await asyncio.wait(
            [both, *polling], timeout=REVOCATION_DEADLINE, return_when=asyncio.FIRST_COMPLETED
        )
        if not both.done() and not any(task.done() for task in polling):
            raise RuntimeError(f"the replicas did not serve the token in {REVOCATION_DEADLINE} s")
        sent = time.perf_counter()
        r = await admin.delete(f"users/{user}/tokens/{token_id}")
        answered = time.perf_counter()
        if r.status_code != 204:
            raise RuntimeError(f"DELETE token {token_id}: {r.status_code} {r.text[:200]}")
        refused = await asyncio.gather(*polling)
    finally:
        for task in (both, *polling):
            task.cancel()
    if min(at for at, _, _ in refused) < sent:
        return None
    return Revoked(sent, answered, *map(list, zip(*refused, strict=True)))


def _percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max of ``samples`` (seconds), in milliseconds."""
    figures = Figures("", samples)
    return {f"p{p}_ms": figures.percentile(p) * 1e3 for p in (50, 95, 99)} | {
        "max_ms": max(samples) * 1e3,
        "n": len(samples),
    }


def _cached_hub_auth() -> dict[str, Any] | None:
    """CachedHubAuth's revocation delay from the committed services results, for scale."""
    path = Path(__file__).parent / "results" / "latest-services.json"
    try:
        data = json.loads(path.read_text())
        revocation = data["services"]["revocation"]["from_sent"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"p99_ms": revocation["p99_us"] / 1e3, "measured": data["machine"]["date"],
            "file": "latest-services.json"}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(True)), indent=2))
