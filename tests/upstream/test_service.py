"""The user's upstream tokens, handed out by the service against the real test provider.

The provider (tests/oidc) rotates refresh tokens at every use and revokes the whole grant
when a spent one comes back (oidc-provider's reuse detection, logged as GRANT-REVOKED):
a second refresh with the same refresh token would show there. Its hub-login tokens
and its targets' tokens live 30 s here, so "at expiry" is a request for 26 s four
seconds after a token was handed out. The hub side (the route, a real login through the
provider's pages, JupyterHub's own refresh) is tests/e2e/test_upstream_tokens.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache import close_all
from jupyter_token_cache.tokens.events import UPSTREAM_ENDED
from jupyter_token_cache.tokens.models import Forbidden, LifetimeUnavailable, UnknownService
from jupyter_token_cache.upstream.auth_state import ended_by, held, stamped
from jupyter_token_cache.upstream.grants import TokenEndpoint
from jupyter_token_cache.upstream.models import LoginRequired
from jupyter_token_cache.upstream.service import UpstreamTokenService
from jupyter_token_cache.upstream.targets import UpstreamTokens

from ..conftest import settings_for
from ..oidc.server import GRANT_REVOKED, HUB_LOGIN, OIDCProvider
from ..servers import RedisServer
from .outbound import States, running_provider, service

LIFETIME = 30
#: "At expiry": a request for this much, SOON seconds after the token was handed out.
AT_EXPIRY, SOON = LIFETIME - 4, 4.2
SCOPES = frozenset({"custom:token-cache:upstream"})
REFRESHES = "POST /token refresh_token"


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProvider]:
    yield from running_provider(hub_access_ttl=LIFETIME, target_ttl=LIFETIME)


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, crypt_key: str) -> AsyncIterator[TokenCache]:
    yield TokenCache(operation_timeout=5.0, **settings_for(request.param, request, crypt_key))
    await close_all()


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def active(provider: OIDCProvider, token: str) -> bool:
    """Whether the provider says ``token`` is active (its grant lives)."""
    r = httpx.post(f"{provider.url}/token/introspection", data={"token": token}, auth=HUB_LOGIN)
    return bool(r.json().get("active"))


def no_secret_on(request: pytest.FixtureRequest, secrets: set[str]) -> None:
    """No token (nor refresh or ID token) in any key or value on the Redis the test used."""
    if "redis_server" not in request.fixturenames:
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    for name, value in server.dump().items():
        assert not [s for s in secrets if s in name or s.encode() in value], "a secret on Redis"


def state_secrets(state: dict[str, Any]) -> set[str]:
    found = {state.get("access_token"), state.get("refresh_token"), state.get("id_token")}
    return {s for s in found if s}


async def test_a_hundred_requests_at_expiry_make_one_refresh_and_get_one_token(
    cache: TokenCache, provider: OIDCProvider, request: pytest.FixtureRequest
) -> None:
    upstream, states, _ = service(provider, cache)
    login = states.log_in(provider, "alice")
    first = await upstream.token("alice", SCOPES)
    assert first.access_token == login["access_token"] and first.cached is False
    assert (await upstream.token("alice", SCOPES)).cached is True
    await asyncio.sleep(SOON)
    refreshes, revoked = provider.requests(REFRESHES), provider.requests(GRANT_REVOKED)
    answers = await asyncio.gather(
        *(upstream.token("alice", SCOPES, minimum_lifetime=AT_EXPIRY) for _ in range(100))
    )
    made = provider.requests(REFRESHES) - refreshes
    tokens = {a.access_token for a in answers}
    print(f"\n100 requests at expiry: {made} refresh, {len(tokens)} token")
    assert made == 1 and len(tokens) == 1 and first.access_token not in tokens
    assert sum(not a.cached for a in answers) == 1
    assert all(a.expires_at - time.time() >= AT_EXPIRY for a in answers)  # type: ignore[operator]
    saved = states.states["alice"]
    assert saved["refresh_token"] != login["refresh_token"]  # the rotated one, kept
    assert provider.requests(GRANT_REVOKED) == revoked and active(provider, tokens.pop())
    no_secret_on(request, state_secrets(login) | state_secrets(saved))


async def test_invalid_grant_ends_the_session_once_and_asks_to_log_in_again(
    cache: TokenCache, provider: OIDCProvider
) -> None:
    upstream, states, events = service(provider, cache)
    login = states.log_in(provider, "alice")
    await upstream.token("alice", SCOPES)
    # the grant ends at the provider (revoking its refresh token revokes it)
    r = httpx.post(
        f"{provider.url}/token/revocation",
        auth=HUB_LOGIN,
        data={"token": login["refresh_token"], "token_type_hint": "refresh_token"},
    )
    assert r.status_code == 200
    await asyncio.sleep(SOON)
    refreshes = provider.requests(REFRESHES)
    answers = await asyncio.gather(
        *(upstream.token("alice", SCOPES, minimum_lifetime=AT_EXPIRY) for _ in range(50)),
        return_exceptions=True,
    )
    assert {type(a) for a in answers} == {LoginRequired}
    assert all(a.status == 401 and "log in" in a.message for a in answers)  # type: ignore[union-attr]
    assert provider.requests(REFRESHES) - refreshes == 1
    ends = [e for e in events.events if e.type == UPSTREAM_ENDED]
    assert [(e.user, e.reason) for e in ends] == [("alice", "invalid-grant")]
    assert ended_by(states.states["alice"]) == "invalid-grant"
    assert held(states.states["alice"]) is None  # no token left in the auth state
    with pytest.raises(LoginRequired):  # and no provider call to say so again
        await upstream.token("alice", SCOPES)
    assert provider.requests(REFRESHES) - refreshes == 1


async def test_a_target_token_has_the_targets_audience_and_scopes_only(
    cache: TokenCache, provider: OIDCProvider, request: pytest.FixtureRequest
) -> None:
    upstream, states, _ = service(provider, cache)
    login = states.log_in(provider, "alice")
    revoked = provider.requests(GRANT_REVOKED)
    assert {"s3:read", "s3:write", "api:read"} <= set(login["scope"])  # the login holds all
    s3 = await upstream.token("alice", SCOPES, target="s3")
    api = await upstream.token("alice", SCOPES, target="api")
    dependent = await upstream.token("alice", SCOPES, target="s3-dependent")
    found = {
        name: claims(t.access_token)
        for name, t in (("s3", s3), ("api", api), ("s3-dependent", dependent))
    }
    print("\ntarget tokens:", {n: (c["aud"], c["scope"]) for n, c in found.items()})
    assert (found["s3"]["aud"], found["s3"]["scope"]) == ("s3", "s3:read")
    assert (found["api"]["aud"], found["api"]["scope"]) == ("internal-api", "api:read")
    assert found["s3-dependent"]["aud"] == "s3"
    assert s3.scope == "s3:read" and s3.target == "s3" and api.scope == "api:read"
    # the resource indicator's refresh rotated the refresh token: kept, the grant alive
    assert states.states["alice"]["refresh_token"] != login["refresh_token"]
    assert provider.requests(GRANT_REVOKED) == revoked
    assert active(provider, states.states["alice"]["access_token"])
    no_secret_on(
        request,
        state_secrets(login)
        | state_secrets(states.states["alice"])
        | {s3.access_token, api.access_token, dependent.access_token},
    )


async def test_a_thousand_requests_one_provider_call_reused_until_its_minimum(
    cache: TokenCache, provider: OIDCProvider
) -> None:
    upstream, states, _ = service(provider, cache)
    states.log_in(provider, "alice")
    calls = provider.requests("POST /token")
    answers = await asyncio.gather(
        *(upstream.token("alice", SCOPES, target="api") for _ in range(1000))
    )
    made = provider.requests("POST /token") - calls
    print(f"\n1,000 requests for a target: {made} provider call")
    assert made == 1 and len({a.access_token for a in answers}) == 1
    token = answers[0].access_token
    # reused while it has the minimum left; past it, a new one
    assert (
        await upstream.token("alice", SCOPES, target="api", minimum_lifetime=25)
    ).access_token == token
    await asyncio.sleep(SOON)
    again = await upstream.token("alice", SCOPES, target="api", minimum_lifetime=AT_EXPIRY)
    assert again.access_token != token and provider.requests("POST /token") - calls == 2


async def test_another_user_or_session_never_gets_it(
    cache: TokenCache, provider: OIDCProvider
) -> None:
    upstream, states, _ = service(provider, cache)
    states.log_in(provider, "alice")
    states.log_in(provider, "bob")
    alices = {await upstream.token("alice", SCOPES, target=t) for t in (None, "s3", "api")}
    bobs = {await upstream.token("bob", SCOPES, target=t) for t in (None, "s3", "api")}
    assert not {t.access_token for t in alices} & {t.access_token for t in bobs}
    assert {claims(t.access_token)["sub"] for t in bobs if t.target} == {"bob"}
    old = await upstream.token("alice", SCOPES, target="api")
    states.log_in(provider, "alice")  # a new login: a new upstream session
    new = await upstream.token("alice", SCOPES, target="api")
    assert new.access_token != old.access_token and new.cached is False
    assert claims(old.access_token)["sid"] != claims(new.access_token)["sid"]


async def test_who_may_ask_and_what_cannot_be_answered(
    cache: TokenCache, provider: OIDCProvider
) -> None:
    upstream, states, _ = service(provider, cache)
    with pytest.raises(Forbidden, match="custom:token-cache:upstream"):
        await upstream.token("alice", frozenset({"read:users!user"}))
    with pytest.raises(UnknownService):
        await upstream.token("alice", SCOPES, target="nope")
    with pytest.raises(LoginRequired):  # never logged in through the provider
        await upstream.token("alice", SCOPES)
    states.log_in(provider, "alice")
    calls = provider.requests("POST /token")
    with pytest.raises(LifetimeUnavailable, match="live 30 s"):  # no fresh token would do
        await upstream.token("alice", SCOPES, minimum_lifetime=LIFETIME + 5)
    assert provider.requests("POST /token") == calls  # and nothing was asked to find out
    filtered = await upstream.token("alice", frozenset({"custom:token-cache:upstream!user=alice"}))
    assert filtered.access_token
    with pytest.raises(Forbidden):
        await upstream.token("alice", frozenset({"custom:token-cache:upstream!user=bob"}))


async def test_a_login_without_refresh_tokens_is_handed_out_as_it_is(cache: TokenCache) -> None:
    """GitHub's OAuth apps: a token that does not expire, and no refresh token."""
    states = States()
    states.states["octo"] = stamped(
        {
            "access_token": "gho_github",
            "refresh_token": None,
            "token_response": {
                "access_token": "gho_github",
                "token_type": "bearer",
                "scope": "read:org",
            },
        },
        now=time.time(),
        new=True,
    )

    async def nowhere(name: str) -> str:
        raise AssertionError(f"no provider call may happen (asked for its {name})")

    endpoint = TokenEndpoint(
        http=httpx.AsyncClient(),
        endpoint=nowhere,
        client_id="c",
        client_secret="s",
        counts=Counter(),
    )
    upstream = UpstreamTokenService(
        settings=UpstreamTokens(enabled=True), cache=cache, states=states, endpoint=endpoint
    )
    token = await upstream.token("octo", SCOPES)
    assert token.access_token == "gho_github" and token.expires_at is None
    assert token.model()["expires_in"] is None and token.scope == "read:org"


async def test_globus_resource_server_tokens_are_refreshed_with_their_own(
    cache: TokenCache, provider: OIDCProvider
) -> None:
    upstream, states, _ = service(provider, cache)
    transfer = provider.login_response("alice")  # stands for Globus' transfer token
    states.states["alice"] = stamped(
        {
            "client_id": "hub-login",
            "token_response": {"access_token": "auth-token"},
            "tokens": {
                "transfer.api.globus.org": {
                    "access_token": transfer["access_token"],
                    "refresh_token": transfer["refresh_token"],
                    "expires_in": transfer["expires_in"],
                    "scope": "urn:transfer",
                    "token_type": "Bearer",
                    "resource_server": "transfer.api.globus.org",
                }
            },
        },
        now=time.time(),
        new=True,
    )
    first = await upstream.token("alice", SCOPES, target="transfer")
    assert first.access_token == transfer["access_token"]
    await asyncio.sleep(SOON)
    refreshes = provider.requests(REFRESHES)
    again = await upstream.token("alice", SCOPES, target="transfer", minimum_lifetime=AT_EXPIRY)
    assert again.access_token != first.access_token
    assert provider.requests(REFRESHES) - refreshes == 1
    kept = states.states["alice"]["tokens"]["transfer.api.globus.org"]
    assert kept["access_token"] == again.access_token
    assert kept["refresh_token"] != transfer["refresh_token"]
