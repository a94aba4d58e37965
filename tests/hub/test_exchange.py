"""POST /hub/api/token-cache/exchange against a real OpenID Connect provider (oidc-provider).

Upstream tokens come from the provider's own authorization code flow; provider calls are
counted from its request log. The hub fixture checks afterwards that no upstream or hub
token appeared in a log record or in a value on a shared backend.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from traitlets.config import Config

from jupyter_token_cache.upstream import exchange_verifier
from jupyter_token_cache.upstream.exchange import digest

from ..oidc.jwks import KeySet
from ..oidc.server import OIDCProvider, trust
from ..servers import RedisServer
from ..times import epoch
from .conftest import Hub

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
NOTEBOOK_SCOPES = ["access:servers!user=alice", "read:users!user=alice"]


@pytest.fixture
def hub_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """SQLite only: the exchange adds nothing database-specific to the minting it reuses."""
    monkeypatch.delenv("JUPYTERHUB_TEST_DB_URL", raising=False)
    yield "sqlite"


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> OIDCProvider:
    """The session's provider, or the test's own when it asks for one (fault tests)."""
    name = "own_oidc_provider" if "own_oidc_provider" in request.fixturenames else "oidc_provider"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def hub_config(hub_config: Config, provider: OIDCProvider) -> Config:
    """The hub trusts the provider; alice and bob may log in, mallory is blocked."""
    trust(hub_config, provider)
    hub_config.Authenticator.allowed_users = {"alice", "bob", "mallory"}
    hub_config.Authenticator.blocked_users = {"mallory"}
    hub_config.Authenticator.manage_groups = True
    if "allow_all" not in hub_config.Authenticator:  # MockHub allows everyone by default
        hub_config.Authenticator.allow_all = False
    return hub_config


def jwt_mode(**more: Any) -> pytest.MarkDecorator:
    return pytest.mark.hub_config(TokenExchange__verification="jwt", **more)


async def exchange(hub: Hub, token: str, *, form: bool = True, **params: str) -> httpx.Response:
    hub.secrets.add(token)
    body = {"grant_type": GRANT, "subject_token": token, "subject_token_type": ACCESS, **params}
    if form:
        encoded = urllib.parse.urlencode(body)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return await hub.post("exchange", None, encoded, headers=headers)
    return await hub.post("exchange", None, body)


def refused(response: httpx.Response, error: str, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return str(response.json()["error_description"])


def alices(hub: Hub, provider: OIDCProvider) -> str:
    """A hub user alice, and an opaque upstream token of hers."""
    hub.add_user("alice")
    return provider.token("alice", "urn:hub:opaque")


def alice_claims(provider: OIDCProvider, now: int) -> dict[str, Any]:
    """The claims of a valid JWT for alice from ``provider``, issued at ``now``."""
    return {
        "iss": provider.issuer,
        "aud": "jupyterhub",
        "sub": "alice",
        "iat": now,
        "exp": now + 600,
        "preferred_username": "alice",
    }


async def whoami(hub: Hub, token: str) -> httpx.Response:
    return await hub.api("GET", "user", token)


# -- exchanges that work ------------------------------------------------------------------


async def test_an_opaque_token_is_exchanged_after_one_introspection(
    hub: Hub, provider: OIDCProvider
) -> None:
    upstream = alices(hub, provider)
    before = provider.introspections()
    r = await exchange(hub, upstream)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["token_type"] == "bearer" and answer["issued_token_type"] == ACCESS
    assert answer["access_token"] == answer["token"] and answer["cached"] is False
    assert answer["scope"].split() == answer["scopes"]
    assert set(NOTEBOOK_SCOPES) <= set(answer["scopes"])
    assert all(s.endswith("!user=alice") for s in answer["scopes"])  # notebook_scopes, for alice
    assert 3500 < answer["expires_in"] <= 3600  # the upstream token lives an hour: never past it
    assert provider.introspections() == before + 1
    me = (await whoami(hub, answer["access_token"])).json()
    assert me["name"] == "alice" and sorted(me["scopes"]) == answer["scopes"]
    assert sorted(me["groups"]) == ["science", "staff"]  # synced, as a login would (manage_groups)

    again = await exchange(hub, upstream, form=False)  # JSON too
    assert again.status_code == 200, again.text
    assert again.json()["cached"] is True and again.json()["id"] == answer["id"]
    assert provider.introspections() == before + 1  # zero provider calls for the same token

    admin = hub.token("admin", admin=True)
    listed = (await hub.api("GET", "token-cache/tokens?user=alice", admin)).json()
    assert [(t["id"], t["session_kind"]) for t in listed] == [(answer["id"], "upstream")]
    stats = (await hub.api("GET", "token-cache/stats", admin)).json()
    assert stats["exchange"] == {"hits": 1, "misses": 1, "provider_calls": 1,
                                 "provider_busy": 0, "provider_errors": 0}  # fmt: skip


@jwt_mode()
async def test_a_jwt_is_checked_against_the_providers_keys(
    hub: Hub, provider: OIDCProvider
) -> None:
    hub.add_user("bob")
    introspections = provider.introspections()
    keys_before = provider.requests("GET /jwks")
    calls_before = provider.requests()
    upstream = provider.token("bob", "urn:hub:jwt")
    r = await exchange(hub, upstream)
    assert r.status_code == 200, r.text
    assert (await whoami(hub, r.json()["access_token"])).json()["name"] == "bob"
    token_calls = provider.requests() - calls_before
    # the code flow's requests, and the discovery document and keys once
    assert provider.requests("GET /jwks") == keys_before + 1
    calls_before = provider.requests()
    again = await exchange(hub, upstream)
    assert again.json()["id"] == r.json()["id"] and again.json()["cached"] is True
    assert provider.requests() == calls_before  # no provider call at all
    assert token_calls > 0 and provider.introspections() == introspections


async def thousand(hub: Hub, upstream: str) -> None:
    """1,000 concurrent exchanges of ``upstream``: all answered, with one hub token."""
    # a client of its own: the shared one's pool would time requests out waiting in line
    await hub.http.aclose()
    hub.http = httpx.AsyncClient(
        base_url=hub.url, event_hooks=hub.hooks, timeout=httpx.Timeout(120, pool=None)
    )
    answers = await asyncio.gather(*(exchange(hub, upstream) for _ in range(1000)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum(not r.json()["cached"] for r in answers) == 1


@pytest.mark.hub_config(TokenExchange__introspection_ttl=3600.0)  # outlasts a slow machine
async def test_a_thousand_concurrent_exchanges_make_one_provider_call_and_one_token(
    hub: Hub, provider: OIDCProvider
) -> None:
    upstream = alices(hub, provider)
    before = provider.introspections()
    await thousand(hub, upstream)
    assert provider.introspections() == before + 1
    assert len(hub.minted_rows("alice")) == 1


@jwt_mode()
async def test_a_thousand_concurrent_exchanges_of_a_jwt_fetch_the_keys_once(
    hub: Hub, provider: OIDCProvider
) -> None:
    hub.add_user("alice")
    upstream = provider.token("alice", "urn:hub:jwt")
    before = provider.requests()
    await thousand(hub, upstream)
    # a fresh hub: its discovery document and keys, once each, and nothing per token
    assert provider.requests() - before == 2
    assert provider.requests("GET /jwks") >= 1 and len(hub.minted_rows("alice")) == 1


async def test_a_service_token_and_narrower_scopes(hub: Hub, provider: OIDCProvider) -> None:
    upstream = alices(hub, provider)
    r = await exchange(hub, upstream, resource="dask")
    assert r.status_code == 200, r.text
    assert r.json()["service"] == "dask" and "read:users!user=alice" in r.json()["scopes"]
    narrow = await exchange(hub, upstream, scope="read:users!user")
    assert narrow.status_code == 200, narrow.text
    assert "read:users!user=alice" in narrow.json()["scopes"]
    assert not [s for s in narrow.json()["scopes"] if s.startswith("access:servers")]
    both = await exchange(hub, upstream, audience="dask", resource="dask")
    assert both.json()["id"] == r.json()["id"]


@pytest.mark.hub_config(TokenExchange__auto_create_users=True, Authenticator__allow_all=True)
async def test_an_allowed_user_is_created_only_when_asked_to(
    hub: Hub, provider: OIDCProvider
) -> None:
    r = await exchange(hub, provider.token("dave", "urn:hub:opaque"))
    assert r.status_code == 200, r.text
    assert hub.app.users["dave"].name == "dave"


@pytest.mark.hub_config(Authenticator__allow_all=True)
async def test_an_unknown_user_is_not_created_by_default(hub: Hub, provider: OIDCProvider) -> None:
    r = await exchange(hub, provider.token("dave", "urn:hub:opaque"))
    assert "no hub account" in refused(r, "invalid_grant")
    hub.db.expire_all()
    assert hub.app.users.get("dave") is None


# -- refusals, each with its RFC error -------------------------------------------------------


async def test_a_token_revoked_at_the_provider_is_refused_and_its_hub_tokens_revoked(
    hub: Hub, provider: OIDCProvider
) -> None:
    hub.app.authenticator.token_exchange.answers.ttl = 0.5  # introspection_ttl, short
    upstream = alices(hub, provider)
    minted = (await exchange(hub, upstream)).json()["access_token"]
    assert (await whoami(hub, minted)).status_code == 200
    provider.revoke(upstream)
    await asyncio.sleep(0.6)
    refused(await exchange(hub, upstream), "invalid_grant")
    assert (await whoami(hub, minted)).status_code == 403  # its child went with it
    assert hub.minted_rows("alice") == []


async def test_expired_tokens_are_refused(hub: Hub, provider: OIDCProvider) -> None:
    hub.add_user("alice")
    opaque = provider.token("alice", "urn:hub:short-opaque")
    # alive, but too short for a hub token that may not outlive it (minimum_lifetime)
    assert "could live" in refused(await exchange(hub, opaque), "invalid_grant")
    await asyncio.sleep(provider.short_ttl + 1)
    refused(await exchange(hub, opaque), "invalid_grant")


@jwt_mode()
async def test_jwts_are_refused_when_expired_tampered_unsigned_or_for_others(
    hub: Hub, provider: OIDCProvider
) -> None:
    hub.add_user("alice")
    short = provider.token("alice", "urn:hub:short-jwt")
    good = provider.token("alice", "urn:hub:jwt")
    other = provider.token("alice", "urn:other:jwt")
    now = int(time.time())
    claims = alice_claims(provider, now)
    head, body, signature = good.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    public_pem = provider.private_key.public_key().public_bytes(
        encoding=Encoding.PEM, format=PublicFormat.SubjectPublicKeyInfo
    )
    cases = {
        "tampered signature": f"{head}.{body}.{flipped}",
        "wrong aud (a real token for another app)": other,
        "wrong iss": provider.forge({**claims, "iss": "http://127.0.0.1:1/"}),
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": provider.kid}),
        "HS256 keyed with the public key": _hs256(claims, public_pem, provider.kid),
        "not yet valid": provider.forge({**claims, "nbf": now + 600}),
        "no exp": provider.forge({k: v for k, v in claims.items() if k != "exp"}),
        "forged kid": provider.forge(claims, kid="no-such-key"),
        "not a JWT": "not-a-jwt",
    }
    for name, token in cases.items():
        assert (await exchange(hub, token)).json().get("error") == "invalid_grant", name
    await asyncio.sleep(provider.short_ttl + 1)
    refused(await exchange(hub, short), "invalid_grant")
    assert (await exchange(hub, good)).status_code == 200  # the provider's own still works


def _hs256(claims: dict[str, Any], key: bytes, kid: str) -> str:
    """HS256 keyed with the public key (PyJWT refuses to make one: sign by hand)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing = (
        b64(json.dumps({"alg": "HS256", "kid": kid}).encode())
        + "."
        + b64(json.dumps(claims).encode())
    )
    return signing + "." + b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())


async def test_audience_user_scope_and_service_refusals(hub: Hub, provider: OIDCProvider) -> None:
    hub.add_user("alice")
    hub.add_user("mallory")  # in the database, blocked; carol: neither allowed nor in it
    assert "audience" in refused(
        await exchange(hub, provider.token("alice", "urn:other:opaque")), "invalid_grant"
    )
    refused(await exchange(hub, provider.token("mallory", "urn:hub:opaque")), "invalid_grant")
    assert "may not use" in refused(
        await exchange(hub, provider.token("carol", "urn:hub:opaque")), "invalid_grant"
    )
    upstream = provider.token("alice", "urn:hub:opaque")
    refused(await exchange(hub, upstream, scope="admin:users"), "invalid_scope")
    refused(await exchange(hub, upstream, scope="no-such-scope"), "invalid_scope")
    refused(await exchange(hub, upstream, resource="no-such-service"), "invalid_target")
    refused(await exchange(hub, upstream, resource="dask", audience="short"), "invalid_target")
    refused(await exchange(hub, upstream, subject_token_type="urn:x"), "invalid_request")
    refused(await exchange(hub, upstream, grant_type="password"), "unsupported_grant_type")
    refused(await hub.post("exchange", None, {"subject_token_type": ACCESS}), "invalid_request")
    refused(await hub.post("exchange", None, b"{not json"), "invalid_request")
    assert hub.minted_rows("alice") == [] and hub.minted_rows("mallory") == []


# -- the provider down --------------------------------------------------------------------


@pytest.mark.hub_config(TokenExchange__timeout=1.0)
async def test_provider_killed_or_stopped_fails_closed_then_recovers(
    hub: Hub, own_oidc_provider: OIDCProvider
) -> None:
    provider = own_oidc_provider
    hub.add_user("alice")
    first = provider.token("alice", "urn:hub:opaque")
    assert (await exchange(hub, first)).status_code == 200  # discovery cached

    for fault, heal in ((provider.kill, provider.start), (provider.pause, provider.resume)):
        token = provider.token("alice", "urn:hub:opaque") if heal is provider.resume else "x" * 43
        fault()
        started = time.monotonic()
        answers = await asyncio.gather(*(exchange(hub, token) for _ in range(20)))
        took = time.monotonic() - started
        for r in answers:
            refused(r, "temporarily_unavailable", 503)
        assert took < 3, f"503 after {took:.1f} s"
        heal()
        fresh = provider.token("alice", "urn:hub:opaque")
        r = await exchange(hub, fresh)
        assert r.status_code == 200, r.text  # recovered by itself: nothing bad was cached


# -- a shared backend ---------------------------------------------------------------------


@pytest.fixture
def on_redis(hub_config: Config, redis_server: RedisServer, crypt_key: str) -> None:
    """Hub tokens and the provider's answers on Redis (the hub fixture scans it afterwards)."""
    for section in (hub_config.TokenCache, hub_config.UpstreamCache):
        section.backend, section.url, section.encryption_key = "redis", redis_server.url, crypt_key
        section.namespace = f"exchange-{id(hub_config)}-{section is hub_config.TokenCache}"


async def test_on_a_shared_backend_no_token_is_stored_in_the_clear(
    on_redis: None, hub: Hub, provider: OIDCProvider
) -> None:
    upstream = alices(hub, provider)
    first = await exchange(hub, upstream)
    assert first.status_code == 200, first.text
    second = await exchange(hub, upstream)
    assert second.json()["cached"] is True
    refused(await exchange(hub, upstream + "x"), "invalid_grant")
    # the hub fixture then looks for every upstream and hub token in each Redis key and value


async def test_a_restarted_hub_still_revokes_what_an_upstream_session_was_given(
    on_redis: None, hub: Hub, provider: OIDCProvider
) -> None:
    """Which session a token was seen with lives in the hub database, not in the hub process."""
    extension = hub.app.authenticator
    before = extension.token_exchange
    before.answers.ttl = 0.5  # introspection_ttl, short
    upstream = alices(hub, provider)
    minted = (await exchange(hub, upstream)).json()["access_token"]
    # a new process: its own verifier and cache engine, on the same Redis
    extension.token_exchange = exchange_verifier(
        extension.token_exchange_settings, before.log, sessions=before.sessions
    )
    extension.token_exchange.answers.ttl = 0.5
    try:
        provider.revoke(upstream)
        await asyncio.sleep(0.6)  # the answer cached before the revocation runs out
        refused(await exchange(hub, upstream), "invalid_grant")
        assert (await whoami(hub, minted)).status_code == 403
        assert hub.minted_rows("alice") == []
    finally:
        await extension.token_exchange.close()
        extension.token_exchange = before


async def test_the_claim_goes_through_the_authenticators_normalize_username(
    hub: Hub, provider: OIDCProvider
) -> None:
    hub.add_user("bob")
    r = await exchange(hub, provider.token("BoB", "urn:hub:opaque"))  # preferred_username "BoB"
    assert r.status_code == 200, r.text
    assert (await whoami(hub, r.json()["access_token"])).json()["name"] == "bob"


# -- which session a token was seen with is durable -----------------------------------------


async def revoked_after_garbage(hub: Hub, provider: OIDCProvider, garbage: int) -> None:
    """Exchange alice's token, send ``garbage`` garbage subject tokens, revoke hers at the
    provider: presenting it again ends what it was given."""
    hub.app.authenticator.token_exchange.answers.ttl = 0.5  # introspection_ttl, short
    upstream = alices(hub, provider)
    minted = (await exchange(hub, upstream)).json()["access_token"]
    for n in range(garbage):  # no credential needed: anyone can send these
        refused(await exchange(hub, f"garbage-{n}-" + "x" * 20), "invalid_grant")
    provider.revoke(upstream)
    await asyncio.sleep(0.6)
    refused(await exchange(hub, upstream), "invalid_grant")
    assert (await whoami(hub, minted)).status_code == 403
    assert hub.minted_rows("alice") == []


@pytest.mark.hub_config(UpstreamCache__max_size=10)
async def test_a_flood_of_garbage_tokens_cannot_push_a_session_out(
    hub: Hub, provider: OIDCProvider
) -> None:
    await revoked_after_garbage(hub, provider, garbage=20)  # 2 x max_size


@pytest.mark.hub_config(UpstreamCache__enabled=False)
async def test_without_an_answer_cache_the_session_is_still_recorded(
    hub: Hub, provider: OIDCProvider
) -> None:
    await revoked_after_garbage(hub, provider, garbage=3)


async def test_a_token_that_merely_expired_ends_nothing(hub: Hub) -> None:
    """An expired token of a session says nothing of the session: a refreshed one lives on."""
    tokens = hub.app.authenticator.token_exchange
    tokens.sessions.seen(digest("an-old-token"), "upstream:s1", "alice", time.time() + 0.3)
    await asyncio.sleep(0.4)
    assert tokens._ended_session("an-old-token") is None
    tokens.sessions.seen(digest("a-revoked-token"), "upstream:s2", "alice", time.time() + 60)
    assert tokens._ended_session("a-revoked-token") == ("upstream:s2", "alice")
    assert tokens._ended_session("a-revoked-token") is None  # forgotten once told


# -- bad input (issue 23): never a 500, never a wider token ---------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_a_repeated_parameter_is_refused_never_widened(
    hub: Hub, provider: OIDCProvider
) -> None:
    """``scope=A&scope=B`` (what httpx and requests send for a list) counted as absent: every
    notebook scope; ``resource=x&resource=x`` a notebook token instead of x's."""
    upstream = alices(hub, provider)
    hub.secrets.add(upstream)
    base = [("grant_type", GRANT), ("subject_token", upstream), ("subject_token_type", ACCESS)]
    repeats = {
        "scope": [("scope", "read:users!user"), ("scope", "read:users:name!user")],
        "resource": [("resource", "dask"), ("resource", "dask")],
        "audience": [("audience", "dask"), ("audience", "short")],
        "subject_token": [("subject_token", upstream)],
        "grant_type": [("grant_type", GRANT)],
        "subject_token_type": [("subject_token_type", ACCESS)],
    }
    for name, extra in repeats.items():
        r = await hub.post("exchange", None, urllib.parse.urlencode(base + extra), headers=FORM)
        assert refused(r, "invalid_request") == f"{name} is given more than once", name
    duplicated = (
        f'{{"grant_type": "{GRANT}", "subject_token": "{upstream}", '
        f'"subject_token_type": "{ACCESS}", "scope": "read:users!user", "scope": "admin:users"}}'
    )
    r = await hub.post("exchange", None, duplicated, headers={"Content-Type": "application/json"})
    assert refused(r, "invalid_request") == "scope is given more than once"
    assert hub.minted_rows("alice") == []


async def test_a_form_without_grant_type_is_an_invalid_request(
    hub: Hub, provider: OIDCProvider
) -> None:
    """RFC 6749 section 5.2 and the OpenAPI document: a missing parameter is invalid_request."""
    upstream = alices(hub, provider)
    hub.secrets.add(upstream)
    body = urllib.parse.urlencode({"subject_token": upstream, "subject_token_type": ACCESS})
    assert "grant_type" in refused(
        await hub.post("exchange", None, body, headers=FORM), "invalid_request"
    )
    no_type = {"subject_token": upstream, "subject_token_type": ACCESS}
    assert "grant_type" in refused(await hub.post("exchange", None, no_type), "invalid_request")
    assert hub.minted_rows("alice") == []


@jwt_mode(TokenExchange__algorithms=["RS256", "ES256", "ES384", "ES512", "EdDSA"])
async def test_a_jwt_header_naming_another_key_type_is_invalid_grant_not_500(
    hub: Hub, provider: OIDCProvider
) -> None:
    hub.add_user("alice")
    keys = KeySet()  # keys of other types, never published by the provider
    now = int(time.time())
    claims = alice_claims(provider, now)
    for key in ("ec256", "ec384", "ec521", "ed25519"):
        for header in ({"kid": provider.kid}, {"kid": None}, {"kid": "foreign"}):
            r = await exchange(hub, keys.sign(claims, key, **header))
            refused(r, "invalid_grant")
    keys.stop()
    assert hub.minted_rows("alice") == []


@jwt_mode()
async def test_tokens_of_one_upstream_login_share_one_hub_token(
    hub: Hub, provider: OIDCProvider
) -> None:
    """Same ``sid``, the refreshed token expiring later: one hub token (docs/exchange.md),
    never outliving the token presented."""
    hub.add_user("alice")
    first, second = provider.tokens_of_one_login("alice", "urn:hub:jwt")
    ends = [jwt.decode(t, options={"verify_signature": False})["exp"] for t in (first, second)]
    assert ends[0] < ends[1]
    one = await exchange(hub, first)
    assert one.status_code == 200, one.text
    two = await exchange(hub, second)
    assert two.status_code == 200, two.text
    assert (two.json()["id"], two.json()["cached"]) == (one.json()["id"], True)
    assert epoch(two.json()["expires_at"]) <= ends[0]  # capped by the token it was minted for
    assert len(hub.minted_rows("alice")) == 1


@jwt_mode()
async def test_an_older_token_of_a_login_never_gets_a_hub_token_outliving_it(
    hub: Hub, provider: OIDCProvider
) -> None:
    """The later token first: its hub token would outlive the earlier one, so the earlier
    one gets a token of its own, capped by its own expiry."""
    hub.add_user("alice")
    first, second = provider.tokens_of_one_login("alice", "urn:hub:jwt")
    ends = [jwt.decode(t, options={"verify_signature": False})["exp"] for t in (first, second)]
    later = (await exchange(hub, second)).json()
    earlier = (await exchange(hub, first)).json()
    assert epoch(later["expires_at"]) <= ends[1]
    assert epoch(earlier["expires_at"]) <= ends[0]
    assert earlier["id"] != later["id"]
    # the later token again: the earlier one's hub token does not outlive it, and is reused
    again = (await exchange(hub, second)).json()
    assert again["id"] == earlier["id"] and again["cached"] is True
