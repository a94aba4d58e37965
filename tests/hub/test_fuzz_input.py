"""Fuzzing every route of the in-hub adapter (MockHub, in-process) as an attacker would.

Duplicated parameters (a JSON key, a form field, a query parameter given twice), form
against JSON, control characters and non-ASCII text in every field and header (the bytes
httpx refuses to send go over a raw socket), forged JWT headers at the exchange (every
``alg`` × every key type × ``kid`` present, absent, another key's or foreign, ``jku`` /
``x5u`` / ``jwk`` / ``x5c`` headers). Each answer: no 5xx, the documented shape (the
OpenAPI hook of the hub fixture), no token wider than the same request without its
duplicate, no secret in a response; the hub fixture then finds no secret in any log
record. The tally per route is printed (``-s``); ``FUZZ_EXAMPLES`` sets the number of
examples (the default keeps the module to about a minute).
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from traitlets.config import Config

from ..fuzz import (
    ACCESS,
    GRANT,
    Built,
    Request,
    Tally,
    build,
    leaked,
    nasty_text,
    raw_request,
    repeats,
    requests,
    sendable_by_httpx,
    widened,
)
from ..oidc.jwks import ALGORITHMS, AUDIENCE, KEYS, KeySet, running_keyset
from ..oidc.server import OIDCProvider, trust
from .conftest import Hub
from .openapi import check

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))
TALLY = Tally()
CHECKER = "fuzz-checker-secret-0123456789abcdef"
FORM = "application/x-www-form-urlencoded"
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def hub_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """SQLite only: the parsing fuzzed here is the same on every database."""
    monkeypatch.delenv("JUPYTERHUB_TEST_DB_URL", raising=False)
    yield "sqlite"


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    print("\nin-hub adapter fuzz (MockHub):\n" + TALLY.table())


@pytest.fixture
def hub_config(hub_config: Config, oidc_provider: OIDCProvider) -> Config:
    trust(hub_config, oidc_provider)
    hub_config.JupyterHub.services = [{"name": "checker", "api_token": CHECKER}]
    hub_config.JupyterHub.load_roles = [
        {
            "name": "introspector",
            "scopes": ["custom:token-cache:introspect"],
            "services": ["checker"],
        },
    ]
    return hub_config


async def credentials(hub: Hub, provider: OIDCProvider) -> dict[str, str | None]:
    """One of each kind of credential (made once per test), each a secret to watch for."""
    if getattr(hub, "credentials", None):
        return hub.credentials  # type: ignore[no-any-return]
    user = hub.token("alice")
    made = {
        "none": None,
        "garbage": "0" * 32,
        "user": user,
        "narrow": hub.token("alice", scopes=["read:users:name!user"]),
        "admin": hub.token("root", admin=True),
        "checker": CHECKER,
        "upstream": provider.token("alice", "urn:hub:opaque"),
    }
    for kind, body in (("notebook", {}), ("internal", {"service": "dask"})):
        made[kind] = (await hub.post(kind, user, body)).json()["token"]
    hub.secrets.update(v for v in made.values() if v and v != "0" * 32)
    hub.credentials = made  # type: ignore[attr-defined]
    return made


@pytest.mark.hub_config(TokenExchange__negative_ttl=0.001)
@FUZZ
@given(request=requests())
async def test_fuzz_the_in_hub_routes(
    hub: Hub, oidc_provider: OIDCProvider, request: Request
) -> None:
    made = await credentials(hub, oidc_provider)
    label, kind = request.route.label, request.route.body
    built = build(request, made, "/hub/api/token-cache")
    status, content = await send(hub, built)
    TALLY.add("hub", label, status)
    assert status < 500, (label, content[:300])
    if not content:  # Tornado's HTTP parser refused a header it cannot read (no handler ran)
        assert status == 400, (label, status)
        TALLY.checks["refused by Tornado's HTTP parser"] += 1
        return
    answer = json.loads(content)
    if kind == "oauth" and status == 400:
        assert set(answer) == {"error", "error_description"}, answer
    elif status >= 400:
        assert answer["status"] == status and answer["message"], answer
    check(built.method, built.target.split("?")[0], status, answer)
    issued = answer.get("token") if status == 200 and isinstance(answer, dict) else None
    if issued:
        hub.secrets.add(issued)
    found = leaked(content.decode("utf-8", "replace"), hub.secrets, allowed=issued)
    TALLY.checks["secrets leaked"] += len(found)
    assert not found, f"{label} answered a secret"
    if repeats(built.pairs) or repeats(request.query):
        TALLY.checks["with a duplicate"] += 1
        if issued:  # the same request without its duplicates gets no narrower token
            alone_status, alone = await send(hub, built.without_duplicates(request))
            wider = widened(answer, json.loads(alone) if alone_status == 200 else None)
            TALLY.checks["widened"] += wider
            assert not wider, (label, request)


async def send(hub: Hub, built: Built) -> tuple[int, bytes]:
    """httpx when it can send the headers (its answer checked by the fixture's hooks), else
    a raw socket."""
    if all(sendable_by_httpx(v) for _, v in built.headers):
        r = await hub.http.request(
            built.method,
            built.target.removeprefix("/hub/"),
            headers=built.headers,
            content=built.body,
        )
        return r.status_code, r.content
    url = urllib.parse.urlparse(hub.url)  # MockHub's base URL: /@/space%20word/hub/
    target = url.path + built.target.removeprefix("/hub/")
    return await raw_request(
        url.hostname or "127.0.0.1", url.port or 80, built.method, target, built.headers, built.body
    )


# -- forged JWTs at the exchange --------------------------------------------------------------


@pytest.fixture
def keyset() -> Iterator[KeySet]:
    yield from running_keyset()


@pytest.fixture
def hub_config_jwt(hub_config: Config, keyset: KeySet) -> Config:
    exchange = hub_config.TokenExchange
    exchange.issuer = keyset.issuer
    exchange.verification = "jwt"
    exchange.jwks_uri = f"{keyset.url}/jwks"
    exchange.algorithms = ["RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"]
    exchange.negative_ttl = 0.001
    return hub_config


@FUZZ
@given(
    alg=st.none() | st.sampled_from(ALGORITHMS),  # None: the signing key's own
    key=st.sampled_from(list(KEYS)),
    foreign=st.booleans(),
    kid=st.sampled_from(["own", "absent", "other", "foreign", "number", "list"]),
    extra=st.dictionaries(
        st.sampled_from(["jku", "x5u", "jwk", "x5c", "crit", "typ", "cty"]),
        st.sampled_from(["http://127.0.0.1:9/keys", "x", 5, ["exp"], None])
        | st.just({"kty": "oct", "k": "c2VjcmV0"}),
        max_size=3,
    ),
    claims=st.fixed_dictionaries(
        {},
        optional={
            "aud": st.sampled_from(["jupyterhub", "other-app", ["jupyterhub", "x"], 5]),
            "iss": st.sampled_from(["<issuer>", "http://127.0.0.1:9", 7]),
            "exp": st.sampled_from([-60, 3600, "soon", None]),
            "preferred_username": st.sampled_from(["alice", "bob", "", 5]) | nasty_text,
            "nbf": st.sampled_from([600, -60]),
        },
    ),
    form=st.booleans(),
)
async def test_fuzz_forged_jwt_headers_at_the_exchange(
    hub_config_jwt: Config,
    hub: Hub,
    keyset: KeySet,
    alg: str | None,
    key: str,
    foreign: bool,
    kid: str,
    extra: dict[str, Any],
    claims: dict[str, Any],
    form: bool,
) -> None:
    """Only a token signed with the published key its header names (or the only one that
    fits), with that key's own algorithm and good claims, is exchanged."""
    alg = KEYS[key][1] if alg is None else alg
    for name in ("alice", "bob"):
        hub.add_user(name)
    now = int(time.time())
    body = keyset.claims()
    for claim, value in claims.items():
        if claim in ("exp", "nbf") and isinstance(value, int):
            value = now + value
        body[claim] = keyset.issuer if value == "<issuer>" else value
    body = {k: v for k, v in body.items() if v is not None}
    header: dict[str, Any] = {**extra, "alg": alg}
    header["kid"] = {
        "own": key,
        "absent": None,
        "other": next(k for k in KEYS if k != key),
        "foreign": "foreign-kid",
        "number": 5,
        "list": [key],
    }[kid]
    token = keyset.sign(body, key, foreign=foreign, **header)
    params = {"grant_type": GRANT, "subject_token": token, "subject_token_type": ACCESS}
    if form:
        r = await hub.http.post(
            "api/token-cache/exchange",
            content=urllib.parse.urlencode(params),
            headers={"Content-Type": FORM},
        )
    else:
        r = await hub.http.post("api/token-cache/exchange", json=params)
    TALLY.add("hub", "exchange (forged JWTs)", r.status_code)
    assert r.status_code < 500, r.text
    valid = (
        claims.get("aud", AUDIENCE) in (AUDIENCE, [AUDIENCE, "x"])
        and claims.get("iss", "<issuer>") == "<issuer>"
        and claims.get("exp", 3600) == 3600
        and claims.get("nbf", -60) == -60
    )
    genuine = (
        not foreign
        and alg == KEYS[key][1]
        and kid in ("own", "absent")
        and valid
        and extra.get("crit") is None
    )
    if r.status_code == 200:
        hub.secrets.add(r.json()["access_token"])
        assert genuine, (alg, key, foreign, kid, extra, claims)
    else:
        assert r.json()["error"] in ("invalid_grant", "invalid_request"), r.text
        if genuine and claims.get("preferred_username", "alice") in ("alice", "bob"):
            pytest.fail(f"a genuine token was refused: {r.text}")
    hub.secrets.add(token)
    TALLY.checks["forged tokens exchanged"] += r.status_code == 200 and not genuine
