"""Suite 15: upstream tokens in notebooks, against a real OpenID Connect provider (oidc-provider).

Two ``jupyterhub`` processes (sqlite, configurable-http-proxy, GenericOAuthenticator with
auth state, the provider's client "hub-login") and the provider of the tests
(``tests/oidc``: refresh tokens rotated at every use, a spent one revoking the grant);
alice logs in through the provider's pages. Requests go to the hubs' own ports.

- **cached**: the token cache's route, ``POST /hub/api/token-cache/upstream``;
- **documented**: oauthenticator's documented approach on a plain GenericOAuthenticator
  (no token cache): ``GET /hub/api/users/alice`` with ``admin:auth_state!user``, the whole
  auth state, ``auth_refresh_age`` a third of the tokens' lifetime.

1. latency of a hit of the route against ``GET /hub/api/user`` (the floor of any
   authenticated hub request) and the documented approach's read, interleaved; requests
   per second at concurrency 1 and 10;
2. provider calls per 10,000 notebook requests (concurrency 10, from three credentials of
   alice's, across several expiries of her tokens), counted from the provider's log, for
   both approaches: refresh grants (and those refused), userinfo calls, grants revoked;
3. 100 requests at once at expiry (warm connections), for both approaches, in three rounds
   (whether concurrent refreshes race is a matter of chance): refreshes, distinct tokens
   handed out, whether the grant survived. The documented approach refreshes only once the
   provider's userinfo refuses the token, which oidc-provider does ``clock_tolerance``
   (15 s) past its expiry: each round logs alice in, asks 3 s past expiry and again once
   userinfo refuses.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.e2e.upstream import UPSTREAM_SCOPE, config
from tests.hubprocess import HubProcess
from tests.oidc.server import GRANT_REVOKED, HUB_LOGIN, OIDCProvider

from . import progress
from .timing import Figures, interleaved, throughput

HIT = "POST /hub/api/token-cache/upstream (hit)"
USER = "GET /hub/api/user"
DOCUMENTED = "GET /hub/api/users/alice with auth_state (documented approach)"
REFRESH = "POST /token refresh_token"
#: How long past the token's expiry "at expiry" is (whole seconds in the answers: up to 1 more).
PAST_EXPIRY = 3
READERS = """
c.JupyterHub.load_roles.append({"name": "auth-state-readers", "users": ["alice"],
                                "scopes": ["admin:auth_state!user"]})
"""


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.lifetime = 6 if quick else 30
        self.rounds, self.per_round = (3, 20) if quick else (60, 20)
        self.requests = 600 if quick else 10_000
        self.throughput = 100 if quick else 2_000
        self.compare = not quick  # the documented approach and the bursts at expiry
        #: Rounds of bursts: whether concurrent refreshes race is chance, so a few.
        self.bursts = 3


async def run(quick: bool) -> dict[str, Any]:
    sizes = Sizes(quick)
    provider = OIDCProvider(hub_access_ttl=sizes.lifetime).start()
    key = Fernet.generate_key().decode()
    hubs: list[HubProcess] = []
    try:
        cached = _hub(hubs, provider, key, cached=True, refresh_age=300, extra=READERS)
        found: dict[str, Any] = {
            "lifetime": sizes.lifetime,
            "clock_tolerance": provider.clock_tolerance,
        }
        tokens = _credentials(cached, provider, [UPSTREAM_SCOPE, "admin:auth_state!user"])
        found["latency"] = await _latency(cached, tokens[0], sizes)
        found["cached"] = await _calls(provider, sizes, _route(cached, tokens))
        if sizes.compare:
            found["cached"]["at_expiry"] = bursts = []
            for _ in range(sizes.bursts):
                # whatever token the route holds now has expired by then
                expired = time.monotonic() + sizes.lifetime
                bursts.append(
                    await _at_expiry(cached, provider, tokens, cached=True, expired=expired)
                )
            plain = _hub(hubs, provider, key, cached=False, refresh_age=sizes.lifetime // 3)
            read = _credentials(plain, provider, ["admin:auth_state!user", "read:users!user"])
            found["documented"] = await _calls(provider, sizes, _documented(plain, read))
            early: list[dict[str, Any]] = []
            late: list[dict[str, Any]] = []
            found["documented"].update(at_expiry=early, userinfo_refuses=late)
            for _ in range(sizes.bursts):
                provider.log_in(plain.url, "alice").close()  # a live grant, a fresh token
                expired = time.monotonic() + sizes.lifetime
                early.append(await _at_expiry(plain, provider, read, cached=False, expired=expired))
                # auth_refresh_age (a third of the lifetime) has passed again since that burst
                late.append(
                    await _at_expiry(
                        plain,
                        provider,
                        read,
                        cached=False,
                        expired=expired,
                        past=provider.clock_tolerance + 2,
                    )
                )
    finally:
        for hub in hubs:
            hub.stop()
        provider.stop()
    return found


def _hub(
    hubs: list[HubProcess],
    provider: OIDCProvider,
    key: str,
    *,
    cached: bool,
    refresh_age: int,
    extra: str = "",
) -> HubProcess:
    workdir = Path(tempfile.mkdtemp(prefix="bench-upstream-"))
    progress.step(f"starting the {'token cache' if cached else 'plain'} hub and logging alice in")
    text = config(workdir, provider, key, cached=cached, refresh_age=refresh_age, servers=False)
    text = text.replace('c.TokenCache.backend = "redis"', 'c.TokenCache.backend = "memory"')
    hub = HubProcess(workdir, text + extra)
    hubs.append(hub)
    hub.start()
    provider.log_in(hub.url, "alice").close()
    return hub


def _credentials(hub: HubProcess, provider: OIDCProvider, scopes: list[str]) -> list[str]:
    """Three API tokens of alice's: the credentials of three of her servers."""
    with hub.admin(direct=True) as api:
        return [
            api.post("users/alice/tokens", json={"scopes": scopes}).json()["token"]
            for _ in range(3)
        ]


Ask = Callable[[httpx.AsyncClient, int], Awaitable[tuple[str, float | None]]]


def _route(hub: HubProcess, tokens: list[str]) -> tuple[HubProcess, Ask]:
    async def ask(client: httpx.AsyncClient, n: int) -> tuple[str, float | None]:
        r = await client.post(
            f"{hub.hub_url}/hub/api/token-cache/upstream",
            json={},
            headers={"Authorization": f"token {tokens[n % 3]}"},
        )
        r.raise_for_status()
        return r.json()["access_token"], r.json()["expires_in"]

    return hub, ask


def _documented(hub: HubProcess, tokens: list[str]) -> tuple[HubProcess, Ask]:
    async def ask(client: httpx.AsyncClient, n: int) -> tuple[str, float | None]:
        r = await client.get(
            f"{hub.hub_url}/hub/api/users/alice",
            headers={"Authorization": f"token {tokens[n % 3]}"},
        )
        r.raise_for_status()
        return r.json()["auth_state"]["access_token"], None

    return hub, ask


async def _latency(hub: HubProcess, token: str, sizes: Sizes) -> dict[str, Any]:
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(
        base_url=f"{hub.hub_url}/hub/api/", headers=headers, timeout=60
    ) as api:
        contenders = {
            HIT: lambda: api.post("token-cache/upstream", json={}),
            USER: lambda: api.get("user"),
            DOCUMENTED: lambda: api.get("users/alice"),
        }
        figures: dict[str, Figures] = await interleaved(
            contenders, rounds=sizes.rounds, per_round=sizes.per_round
        )
        await throughput(contenders, figures, total=sizes.throughput)
    summary = {name: f.summary() for name, f in figures.items()}
    return {
        "rounds": sizes.rounds,
        "per_round": sizes.per_round,
        "figures": summary,
        "hit_over_user_p50": summary[HIT]["p50_us"] / summary[USER]["p50_us"],
    }


async def _calls(
    provider: OIDCProvider, sizes: Sizes, target: tuple[HubProcess, Ask]
) -> dict[str, Any]:
    """Provider calls for ``sizes.requests`` requests at concurrency 10, and what they got."""
    hub, ask = target
    before = {
        what: provider.requests(what)
        for what in (None, REFRESH, f"{REFRESH} 400", "GET /me", GRANT_REVOKED)
    }
    progress.step(f"{sizes.requests:,} notebook requests at concurrency 10 ({hub.workdir.name})")
    turn = itertools.count()
    tokens: set[str] = set()

    async def one(client: httpx.AsyncClient) -> None:
        tokens.add((await ask(client, next(turn)))[0])

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as client:
        remaining = sizes.requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one(client)

        await asyncio.gather(*(worker() for _ in range(10)))
    seconds = time.perf_counter() - started
    after = {what: provider.requests(what) - n for what, n in before.items()}
    return {
        "requests": sizes.requests,
        "seconds": seconds,
        "provider_calls": after[None],
        "per_10000": after[None] * 10_000 / sizes.requests,
        "refreshes": after[REFRESH],
        "refused": after[f"{REFRESH} 400"],
        "userinfo": after["GET /me"],
        "grants_revoked": after[GRANT_REVOKED],
        "tokens": len(tokens),
        "requests_per_second": sizes.requests / seconds,
        "grant_alive": _grant_alive(hub, provider),
    }


async def _at_expiry(
    hub: HubProcess,
    provider: OIDCProvider,
    tokens: list[str],
    *,
    cached: bool,
    expired: float,
    past: int = PAST_EXPIRY,
) -> dict[str, Any]:
    """100 requests at once, over warm connections, ``past`` seconds after alice's token has
    expired (at ``expired``, monotonic time)."""
    progress.step(
        f"100 requests at once {past} s past expiry ({'token cache' if cached else 'documented'})"
    )
    await asyncio.sleep(max(0.0, expired + past - time.monotonic()))
    before = {what: provider.requests(what) for what in (REFRESH, f"{REFRESH} 400", GRANT_REVOKED)}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(client.get(f"{hub.hub_url}/hub/api/") for _ in range(100)))
        _, ask = (_route if cached else _documented)(hub, tokens)
        answers = await asyncio.gather(*(ask(client, n) for n in range(100)))
    handed = {token for token, _ in answers}
    after = {what: provider.requests(what) - n for what, n in before.items()}
    return {
        "seconds_past_expiry": past,
        "refreshes": after[REFRESH],
        "refused": after[f"{REFRESH} 400"],
        "grants_revoked": after[GRANT_REVOKED],
        "tokens": len(handed),
        "handed_out_active": sum(_active(provider, token) for token in handed),
        "grant_alive": _grant_alive(hub, provider),
    }


def _active(provider: OIDCProvider, token: str | None) -> bool:
    if not token:
        return False
    r = httpx.post(f"{provider.url}/token/introspection", data={"token": token}, auth=HUB_LOGIN)
    return bool(r.json().get("active"))


def _grant_alive(hub: HubProcess, provider: OIDCProvider) -> bool:
    """Whether the refresh token in alice's auth state still works: her grant lives."""
    with hub.admin(direct=True) as api:
        state = api.get("users/alice").json().get("auth_state") or {}
    return _active(provider, state.get("refresh_token"))
