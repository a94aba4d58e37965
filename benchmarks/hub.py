"""Suites 1-6: the token cache in a real hub against the hub's own token API.

One ``jupyterhub`` process per backend (sqlite, configurable-http-proxy started by the
hub); requests go to the hub's own port, so the proxy is not measured. Within each hub
the contenders alternate round by round.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.hubprocess import HubProcess
from tests.servers import MemcachedServer, RedisServer

from . import progress
from .report import Ratio
from .timing import Figures, burst, interleaved, throughput

CONFIG = """
from jupyter_token_cache import with_token_cache
c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.log_level = "WARN"
c.TokenCache.services = {{
    "dask": {{"scopes": ["read:users!user", "access:servers!user"], "lifetime": 3600}},
    "search": {{"scopes": ["read:users:name!user"], "lifetime": 3600}},
}}
{storage}
"""

GET_ROOT, GET_USER = "GET /hub/api/ (floor)", "GET /hub/api/user (floor)"
BASELINE = "POST /hub/api/users/{name}/tokens (baseline)"
NOTEBOOK_HIT, INTERNAL_HIT, MISS = "notebook hit", "internal hit", "notebook miss (mint + store)"


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.rounds, self.per_round = (2, 20) if quick else (20, 100)
        self.rps_total = 100 if quick else 2000
        self.misses = 20 if quick else 300
        self.stampede = 100 if quick else 1000
        self.users, self.requests = (5, 200) if quick else (50, 10_000)


async def run(quick: bool) -> tuple[dict[str, dict[str, Figures]], dict[str, Any]]:
    """Latency and throughput groups, and counts (stampede mints, DB rows)."""
    sizes = Sizes(quick)
    groups: dict[str, dict[str, Figures]] = {}
    counts: dict[str, Any] = {}
    key = Fernet.generate_key().decode()
    redis, memcached = RedisServer().start(), MemcachedServer().start()
    storages = {
        "memory": 'c.TokenCache.backend = "memory"',
        "redis": f'c.TokenCache.backend = "redis"\nc.TokenCache.url = "{redis.url}"\n'
                 f'c.TokenCache.encryption_key = "{key}"',
        "memcached": f'c.TokenCache.backend = "memcached"\nc.TokenCache.url = "{memcached.url}"\n'
                     f'c.TokenCache.encryption_key = "{key}"',
    }  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="jtc-bench-") as tmp:
            for backend, storage in storages.items():
                progress.step(f"starting jupyterhub with the {backend} backend")
                hub = HubProcess(Path(tmp) / backend, CONFIG.format(storage=storage)).start()
                try:
                    await _one_hub(hub, backend, sizes, groups, counts)
                finally:
                    hub.stop()
    finally:
        redis.stop()
        memcached.stop()
    return groups, counts


async def _one_hub(hub: HubProcess, backend: str, sizes: Sizes, groups: dict[str, dict[str, Figures]],
                   counts: dict[str, Any]) -> None:  # fmt: skip
    admin = hub.admin(direct=True)
    parents = _user_tokens(admin, "bench", 2 + 2 * sizes.misses + 5)  # misses are measured after a warm-up
    parent, stampede_parent, miss_parents = parents[0], parents[1], iter(parents[2:])
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=f"{hub.hub_url}/hub/api/", limits=limits, timeout=120) as http:
        auth = {"Authorization": f"token {parent}"}

        contenders = {
            GET_ROOT: lambda: http.get(""),
            GET_USER: lambda: http.get("user", headers=auth),
            NOTEBOOK_HIT: lambda: http.post("token-cache/notebook", headers=auth, json={}),
            INTERNAL_HIT: lambda: http.post("token-cache/internal", headers=auth, json={"service": "dask"}),
        }
        if backend == "memory":
            contenders[BASELINE] = lambda: http.post("users/bench/tokens", headers=auth, json={"expires_in": 3600})
        for op in contenders.values():  # prime the cache, check every path answers
            (await op()).raise_for_status()
        group = f"hub, {backend} backend"
        groups[group] = await interleaved(contenders, rounds=sizes.rounds, per_round=sizes.per_round)
        await throughput(contenders, groups[group], total=sizes.rps_total)

        async def miss() -> Any:
            r = await http.post("token-cache/notebook", headers={"Authorization": f"token {next(miss_parents)}"},
                                json={})  # fmt: skip
            assert r.json()["cached"] is False
            return r

        groups[group].update(await interleaved({MISS: miss}, rounds=1, per_round=sizes.misses))

        progress.step(f"stampede: {sizes.stampede} concurrent requests for one token")
        before = admin.get("token-cache/stats").json()["mints"]
        answers = await asyncio.gather(*(
            http.post("token-cache/notebook", headers={"Authorization": f"token {stampede_parent}"}, json={})
            for _ in range(sizes.stampede)))  # fmt: skip
        counts[f"stampede, {backend}: {sizes.stampede} concurrent requests, mints"] = (
            admin.get("token-cache/stats").json()["mints"] - before)  # fmt: skip
        assert len({r.json()["token"] for r in answers}) == 1

        if backend == "memory":
            await _db_growth(hub, admin, http, sizes, counts)


def _user_tokens(admin: httpx.Client, name: str, n: int) -> list[str]:
    if admin.post(f"users/{name}").status_code not in (201, 409):
        raise RuntimeError(f"cannot create user {name}")
    return [admin.post(f"users/{name}/tokens", json={"note": "bench parent"}).json()["token"] for _ in range(n)]


async def _db_growth(hub: HubProcess, admin: httpx.Client, http: httpx.AsyncClient, sizes: Sizes,
                     counts: dict[str, Any]) -> None:  # fmt: skip
    """N requests from U users x 2 services: token rows created, ours against the baseline."""
    users = [f"u{i}" for i in range(sizes.users)]
    parents = {user: _user_tokens(admin, user, 1)[0] for user in users}
    db = hub.workdir / "jupyterhub.sqlite"
    mix = itertools.cycle(itertools.product(users, ("dask", "search")))
    before = _rows(db)

    async def ours() -> None:
        user, service = next(mix)
        r = await http.post("token-cache/internal", headers={"Authorization": f"token {parents[user]}"},
                            json={"service": service})  # fmt: skip
        r.raise_for_status()

    async def baseline() -> None:
        user, _ = next(mix)
        r = await http.post(f"users/{user}/tokens", headers={"Authorization": f"token {parents[user]}"},
                            json={"expires_in": 3600})  # fmt: skip
        r.raise_for_status()

    for name, op in (("jupyter-token-cache internal tokens", ours), ("baseline: a token per request", baseline)):
        progress.step(f"hub database growth: {sizes.requests:,} requests, {name}")
        start = _rows(db)
        await burst(op, 10, sizes.requests)
        counts[f"hub DB rows after {sizes.requests:,} requests ({sizes.users} users x 2 services), {name}"] = (
            _rows(db) - start)  # fmt: skip
    assert _rows(db) >= before


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM api_tokens").fetchone()[0])


RATIOS = [
    ratio
    for backend in ("memory", "redis", "memcached")
    for ratio in (
        Ratio(f"{backend}: notebook hit / GET /hub/api/user p50", f"hub, {backend} backend", NOTEBOOK_HIT, GET_USER, 1.2),
        Ratio(f"{backend}: internal hit / GET /hub/api/user p50", f"hub, {backend} backend", INTERNAL_HIT, GET_USER, 1.2),
        Ratio(f"{backend}: notebook hit / GET /hub/api/user req/s at c10", f"hub, {backend} backend", NOTEBOOK_HIT,
              GET_USER, 0.85, metric="rps10", at_least=True),
        Ratio(f"{backend}: miss (mint + store) / notebook hit p50", f"hub, {backend} backend", MISS, NOTEBOOK_HIT),
    )
] + [Ratio("memory: baseline mint per request / notebook hit p50", "hub, memory backend", BASELINE, NOTEBOOK_HIT,
           4.0, at_least=True)]  # fmt: skip
