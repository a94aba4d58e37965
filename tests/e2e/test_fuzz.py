"""Fuzzing the REST API of a real hub: no 5xx, JSON 4xx with a message, no leaked token.

Hypothesis generates requests to every route, with every kind of credential (none,
garbage, a user's, a narrow one, minted notebook and internal tokens, an admin's) and
bodies from well-formed to garbage. The hub is the ``jupyterhub`` command; afterwards its
whole log is searched for every secret the test knows.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..fuzz import EXCHANGE_NAMES
from ..hub.openapi import check
from ..hubprocess import HubProcess
from ..oidc.server import HUB_CLIENT, OIDCProvider
from ..servers import MissingBinary, unavailable

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2000"))
CONFIG = """
from jupyter_token_cache import with_token_cache
c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.TokenCache.services = {"dask": {"scopes": ["read:users!user", "access:services!service=dask"], "lifetime": 3600},
                         "search": {"scopes": ["read:users:name!user"], "lifetime": 600}}
c.JupyterHub.custom_scopes["custom:token-cache:introspect"] = {"description": "Introspect tokens"}
c.JupyterHub.services.append({"name": "introspector", "api_token": "%s"})
c.JupyterHub.load_roles.append({"name": "introspector", "scopes": ["custom:token-cache:introspect"],
                                "services": ["introspector"]})
"""
INTROSPECTOR = "introspector-" + secrets.token_hex(16)
CONFIG = CONFIG.replace("%s", INTROSPECTOR)
#: The token exchange, trusting the test provider (its issuer is filled in by the fixture).
EXCHANGE = """
c.TokenExchange.issuer = "{issuer}"
c.TokenExchange.client_id, c.TokenExchange.client_secret = {client!r}
c.TokenExchange.allowed_audiences = ["jupyterhub"]
"""
#: In bodies, replaced by the credential of that name (introspection of real tokens); an
#: upstream token of alice's from the provider, for the exchange.
PLACEHOLDERS = ["<user>", "<narrow>", "<notebook>", "<internal>", "<admin>", "<garbage>",
                "<upstream>"]  # fmt: skip
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)
scopes = st.sampled_from(
    [
        "read:users!user",
        "access:services!service=dask",
        "admin:users",
        "inherit",
        "self",
        "read:users!user=bob",
        "read:users:name!user",
        "tokens",
        "no-such",
        "",
        # empty filters (a 500 in scope expansion before)
        "read:users!user=",
        "read:users!group=",
        "access:servers!server=",
        "read:users:name!service=",
        "read:users!",
    ]
) | st.text(max_size=30)
bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "service": st.sampled_from(["dask", "search", "nope", ""])
            | st.text(max_size=20)
            | json_values,
            "scopes": st.lists(scopes, max_size=4) | json_values,
            "minimum_lifetime": st.integers(-10, 10**12) | json_values,
            "extra": json_values,
            "token": st.sampled_from(PLACEHOLDERS) | st.text(max_size=300) | json_values,
        },
    ).map(json.dumps),
    # RFC 7662 form bodies (sent with the form content type on the introspection route)
    st.lists(
        st.tuples(
            st.sampled_from(["token", "token_type_hint", ""]) | st.text(max_size=8),
            st.sampled_from(PLACEHOLDERS) | st.text(max_size=40),
        ),
        max_size=3,
    ).map(urlencode),
    # RFC 8693 bodies (form-encoded on the exchange route, as JSON elsewhere)
    st.lists(
        st.tuples(
            st.sampled_from(EXCHANGE_NAMES) | st.text(max_size=8),
            st.sampled_from(
                [
                    GRANT,
                    ACCESS,
                    "<upstream>",
                    "<user>",
                    "dask",
                    "nope",
                    "read:users!user",
                    "admin:users",
                    "",
                ]
            )
            | st.text(max_size=40),
        ),
        max_size=6,
    ).map(urlencode),
    st.fixed_dictionaries(
        {
            "grant_type": st.just(GRANT),
            "subject_token": st.just("<upstream>"),
            "subject_token_type": st.just(ACCESS),
        },
        optional={
            "scope": st.sampled_from(["read:users!user", "admin:users", "", "x"]),
            "resource": st.sampled_from(["dask", "search", "nope", ""]) | json_values,
        },
    ).map(urlencode),
    json_values.map(json.dumps),
    st.binary(max_size=40),
    # nested deeper than the JSON parser's recursion limit (a 500 before)
    st.builds(
        lambda opening, depth: opening * depth,
        st.sampled_from(["[", '{"a":', '{"scopes":[']),
        st.integers(1_000, 100_000),
    ),
    st.just(""),
)
ROUTES = [("POST", "token-cache/notebook"), ("POST", "token-cache/internal"), ("GET", "token-cache/stats"),
          ("DELETE", "token-cache"), ("DELETE", "token-cache/users/{name}"), ("POST", "token-cache/introspect"),
          ("POST", "token-cache/introspect"), ("GET", "token-cache/tokens"),
          ("POST", "token-cache/exchange"), ("POST", "token-cache/exchange")]  # fmt: skip
#: Query strings of the listing (filters and JupyterHub's pagination).
listing_queries = st.dictionaries(
    st.sampled_from(["user", "kind", "service", "offset", "limit"]) | st.text(max_size=6),
    st.sampled_from(["alice", "notebook", "internal", "dask", "0", "1", "-3", "10000", ""])
    | st.text(max_size=12),
    max_size=4,
)
# weighted towards valid credentials, so that most requests reach the policy
CREDENTIALS = [
    "none",
    "garbage",
    "user",
    "user",
    "user",
    "narrow",
    "notebook",
    "notebook",
    "internal",
    "admin",
    "admin",
    "introspector",
    "introspector",
]


@pytest.fixture(scope="module")
def fuzz_hub(
    tmp_path_factory: pytest.TempPathFactory, oidc_provider: OIDCProvider
) -> Iterator[dict[str, Any]]:
    exchange = EXCHANGE.format(issuer=oidc_provider.issuer, client=HUB_CLIENT)
    try:
        hub = HubProcess(tmp_path_factory.mktemp("fuzz"), CONFIG + exchange)
    except MissingBinary as e:
        unavailable(e)
    hub.start()
    admin = hub.admin(direct=True)
    for name in ("alice", "bob"):
        admin.post(f"users/{name}")
    user = admin.post("users/alice/tokens", json={"note": "fuzz"}).json()["token"]
    narrow = admin.post("users/alice/tokens", json={"scopes": ["read:users:name!user"]}).json()[
        "token"
    ]
    api = httpx.Client(base_url=f"{hub.hub_url}/hub/api/", timeout=30)
    minted = {kind: api.post(f"token-cache/{kind}", headers={"Authorization": f"token {user}"},
                             json={"service": "dask"} if kind == "internal" else {}).json()["token"]
              for kind in ("notebook", "internal")}  # fmt: skip
    upstream = oidc_provider.token("alice", "urn:hub:opaque")
    state = {"hub": hub, "api": api, "secrets": {user, narrow, hub.service_token, INTROSPECTOR, upstream,
                                                 *minted.values()},
             "credentials": {"none": None, "garbage": "0" * 32, "user": user, "narrow": narrow,
                             "admin": hub.service_token, "introspector": INTROSPECTOR, **minted,
                             "upstream": upstream},
             "statuses": Counter()}  # fmt: skip
    try:
        yield state
    finally:
        api.close()
        hub.stop()
        log = hub.log()
        leaked = [s for s in state["secrets"] if s in log]
        print(f"\nfuzz: {sum(state['statuses'].values())} requests, statuses {dict(state['statuses'])}, "
              f"{len(state['secrets'])} secrets, {len(leaked)} in the hub log")  # fmt: skip
        assert not leaked, "a token appeared in the hub's log"


@pytest.mark.e2e
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(route=st.sampled_from(ROUTES), credential=st.sampled_from(CREDENTIALS), body=bodies,
       name=st.sampled_from(["alice", "bob", "nobody"]) | st.text(min_size=1, max_size=20),
       revoke=st.none() | st.sampled_from(["true", "false", "1", "0"]) | st.text(max_size=8),
       form=st.booleans(), query=listing_queries)  # fmt: skip
def test_fuzz_rest_api(fuzz_hub: dict[str, Any], route: tuple[str, str], credential: str, body: Any,
                       name: str, revoke: str | None, form: bool, query: dict[str, str]) -> None:  # fmt: skip
    method, path = route
    path = path.format(name=quote(name, safe=""))
    credentials = fuzz_hub["credentials"]
    token = credentials[credential]
    headers = {"Authorization": f"token {token}"} if token else {}
    params = {} if revoke is None or method != "DELETE" else {"revoke": revoke}
    if path.endswith("/tokens"):
        params = query
    if isinstance(body, str):
        for placeholder in PLACEHOLDERS:
            body = body.replace(placeholder, credentials.get(placeholder[1:-1]) or "")
    content = body if method == "POST" else None
    introspection = path.endswith("/introspect")
    exchange = path.endswith("/exchange")
    if (introspection or exchange) and form:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    r = fuzz_hub["api"].request(method, path, headers=headers, params=params, content=content)
    fuzz_hub["statuses"][r.status_code] += 1
    assert r.status_code < 500, r.text
    payload = r.json()
    if introspection and r.status_code == 400:  # RFC 6749 section 5.2, as RFC 7662 asks
        assert payload["error"] == "invalid_request" and payload["error_description"]
    elif exchange and r.status_code == 400:  # RFC 6749 section 5.2, as RFC 8693 asks
        assert payload["error"] and payload["error_description"]
    elif r.status_code >= 400:
        assert payload["status"] == r.status_code and payload["message"]
    if introspection and r.status_code == 200 and not payload["active"]:
        assert r.content == b'{"active": false}'
    if "/token-cache/users/" not in r.request.url.path or "/" not in name:
        check(method, r.request.url.path, r.status_code, payload)
    if r.status_code == 200 and "token" in payload:
        fuzz_hub["secrets"].add(payload["token"])
        payload = {k: v for k, v in payload.items() if k != "token"}
    text = json.dumps(payload)
    assert not any(secret in text for secret in fuzz_hub["secrets"]), (
        "a token leaked into a response"
    )
