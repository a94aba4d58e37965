"""The identity provider killed (SIGKILL) or frozen (SIGSTOP) under the upstream-token service.

Cached tokens are served while they meet the request's minimum; a request that needs the
provider gets 503 within ``timeout``; and the service recovers by itself once the
provider is back. The provider keeps its grants in a file (as a real one keeps them in a
database), so a restarted one still knows the refresh token. A refresh sent to a frozen
provider is answered when it thaws: the answer is kept (the rotated refresh token saved),
so the grant survives — dropping it would leave a spent refresh token, whose next use
makes the provider revoke the whole grant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache import close_all
from jupyter_token_cache.upstream.models import ProviderDown

from ..oidc.server import GRANT_REVOKED, OIDCProvider
from .outbound import running_provider, service

LIFETIME, AT_EXPIRY, SOON = 30, 26, 4.2
SCOPES = frozenset({"custom:token-cache:upstream"})
REFRESHES = "POST /token refresh_token 200"
TIMEOUT = 2.0


@pytest.fixture
def provider() -> Iterator[OIDCProvider]:
    yield from running_provider(hub_access_ttl=LIFETIME, persist=True)


@pytest.fixture
async def cache() -> AsyncIterator[TokenCache]:
    yield TokenCache(namespace="faults")
    await close_all()


async def refused_in_time(call: asyncio.Future[object] | object, count: int = 1) -> float:
    """Seconds until ``count`` such calls were all refused with 503."""
    started = time.monotonic()
    answers = await asyncio.gather(*(call() for _ in range(count)), return_exceptions=True)  # type: ignore[operator]
    took = time.monotonic() - started
    assert {type(a) for a in answers} == {ProviderDown}, answers
    assert all(a.status == 503 and a.error == "temporarily_unavailable" for a in answers)  # type: ignore[union-attr]
    return took


async def test_provider_killed_cached_tokens_served_then_503_then_recovery(
    provider: OIDCProvider, cache: TokenCache
) -> None:
    upstream, states, _ = service(provider, cache, timeout=TIMEOUT)
    states.log_in(provider, "alice")
    token = await upstream.token("alice", SCOPES)
    provider.kill()
    served = await asyncio.gather(
        *(upstream.token("alice", SCOPES, minimum_lifetime=20) for _ in range(20))
    )
    assert {t.access_token for t in served} == {token.access_token}
    await asyncio.sleep(SOON)
    took = await refused_in_time(
        lambda: upstream.token("alice", SCOPES, minimum_lifetime=AT_EXPIRY), 20
    )
    print(f"\nkilled: cached tokens served; 20 refusals (503) in {took:.2f} s")
    assert took < TIMEOUT + 1
    provider.start()  # its grants back from its store
    again = await upstream.token("alice", SCOPES, minimum_lifetime=AT_EXPIRY)
    assert again.access_token != token.access_token and again.cached is False
    assert provider.requests(GRANT_REVOKED) == 0


async def test_provider_frozen_the_late_refresh_is_kept_and_the_grant_lives(
    provider: OIDCProvider, cache: TokenCache
) -> None:
    upstream, states, _ = service(provider, cache, timeout=TIMEOUT)
    login = states.log_in(provider, "alice")
    token = await upstream.token("alice", SCOPES)
    await upstream.endpoint.endpoint("token_endpoint")  # discovered: the refresh is what waits
    provider.pause()
    try:
        served = await upstream.token("alice", SCOPES, minimum_lifetime=20)
        assert served.access_token == token.access_token  # no provider needed
        await asyncio.sleep(SOON)
        took = await refused_in_time(
            lambda: upstream.token("alice", SCOPES, minimum_lifetime=AT_EXPIRY), 20
        )
        print(f"\nfrozen: 20 refusals (503) in {took:.2f} s")
        assert TIMEOUT - 0.1 < took < TIMEOUT + 1
    finally:
        provider.resume()
    # the refresh sent to the frozen provider is answered now, and its answer kept
    deadline = time.monotonic() + 10
    while states.states["alice"]["refresh_token"] == login["refresh_token"]:
        assert time.monotonic() < deadline, "the late refresh was not kept"
        await asyncio.sleep(0.05)
    refreshes = provider.requests(REFRESHES)
    after = await upstream.token("alice", SCOPES, minimum_lifetime=AT_EXPIRY)
    assert after.access_token != token.access_token
    assert provider.requests(REFRESHES) == refreshes == 1  # the one sent while frozen
    assert provider.requests(GRANT_REVOKED) == 0  # no spent refresh token went back
