"""Suite 11: the token exchange against a real OpenID Connect provider (oidc-provider).

One ``jupyterhub`` process (sqlite, configurable-http-proxy, the dummy authenticator with
the token cache, ``c.TokenExchange`` trusting the provider by introspection) and the
provider of the tests (``tests/oidc``), both on loopback; requests go to the hub's own
port. Upstream tokens come from the provider's authorization code flow.

1. latency of ``POST /hub/api/token-cache/exchange``: a hit (an upstream token exchanged
   before: no provider call, the cached hub token) against a miss (a new upstream token:
   one introspection at the provider and one mint), alternating, one miss per round;
2. provider calls for a number of exchanges from many users (each one upstream token,
   concurrency 10), counted from the provider's own request log.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.hubprocess import HubProcess
from tests.oidc.server import HUB_CLIENT, OIDCProvider

from . import progress
from .timing import Figures, burst

HIT = "exchange, cached (same upstream token)"
MISS = "exchange, new upstream token (introspection + mint)"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
CONFIG = """
from jupyter_token_cache import with_token_cache
c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.TokenExchange.issuer = "{issuer}"
c.TokenExchange.client_id, c.TokenExchange.client_secret = {client!r}
c.TokenExchange.allowed_audiences = ["jupyterhub"]
"""


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.rounds, self.hits_per_round = (5, 20) if quick else (100, 20)
        self.users, self.exchanges = (5, 200) if quick else (50, 10_000)


async def run(quick: bool) -> dict[str, Any]:
    sizes = Sizes(quick)
    provider = OIDCProvider().start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-exchange-"))
    hub = HubProcess(workdir, CONFIG.format(issuer=provider.issuer, client=HUB_CLIENT))
    try:
        hub.start()
        users = [f"user{i}" for i in range(sizes.users)]
        with hub.admin(direct=True) as admin:
            for name in users:
                admin.post(f"users/{name}")
        async with httpx.AsyncClient(base_url=f"{hub.hub_url}/hub/api/", timeout=60) as api:
            latency = await _latency(api, provider, sizes)
            calls = await _provider_calls(api, provider, users, sizes)
    finally:
        hub.stop()
        provider.stop()
    return {"latency": latency, "provider_calls": calls}


async def exchange(api: httpx.AsyncClient, token: str) -> dict[str, Any]:
    body = {"grant_type": GRANT, "subject_token": token, "subject_token_type": ACCESS}
    response = await api.post("token-cache/exchange", data=body)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


async def _latency(api: httpx.AsyncClient, provider: OIDCProvider, sizes: Sizes) -> dict[str, Any]:
    progress.step(f"getting {sizes.rounds + 1} upstream tokens from the provider")
    fresh = [provider.token("user0") for _ in range(sizes.rounds + 1)]
    progress.step(f"latency: {sizes.rounds} rounds of 1 miss and {sizes.hits_per_round} hits")
    figures = {HIT: Figures(HIT), MISS: Figures(MISS)}
    await exchange(api, fresh[0])  # warm-up: discovery, connections
    for token in fresh[1:]:
        started = time.perf_counter()
        assert (await exchange(api, token))["cached"] is False
        figures[MISS].samples.append(time.perf_counter() - started)
        for _ in range(sizes.hits_per_round):
            started = time.perf_counter()
            assert (await exchange(api, token))["cached"] is True
            figures[HIT].samples.append(time.perf_counter() - started)
    summary = {name: f.summary() for name, f in figures.items()}
    ratio = summary[MISS]["p50_us"] / summary[HIT]["p50_us"]
    return {"rounds": sizes.rounds, "hits_per_round": sizes.hits_per_round,
            "figures": summary, "miss_over_hit_p50": ratio}  # fmt: skip


async def _provider_calls(
    api: httpx.AsyncClient, provider: OIDCProvider, users: list[str], sizes: Sizes
) -> dict[str, Any]:
    progress.step(f"one upstream token for each of {len(users)} users")
    tokens = [provider.token(name) for name in users]
    before = provider.requests()
    introspections = provider.introspections()
    turn = itertools.cycle(tokens)
    progress.step(f"{sizes.exchanges:,} exchanges from {len(users)} users, concurrency 10")
    seconds = await burst(lambda: exchange(api, next(turn)), 10, sizes.exchanges)
    calls = provider.requests() - before
    return {
        "exchanges": sizes.exchanges,
        "users": len(users),
        "provider_calls": calls,
        "introspections": provider.introspections() - introspections,
        "per_10000": calls * 10_000 / sizes.exchanges,
        "exchanges_per_second": sizes.exchanges / seconds,
    }
