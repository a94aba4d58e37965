"""The hub's token contract, run against both modes: the in-hub routes and the replicated service.

One suite, parametrised by ``mode``: ``hub`` calls ``/hub/api/token-cache/*``,
``replicated`` calls ``/services/token-cache/*`` (two replicas on Redis, behind the
proxy). Every answer — tokens, reuse, expiry caps, refusals with their exact status and
message, admin reset, revocation — must be the same. A representative subset of
tests/hub (which runs the in-hub mode alone, in-process, in far more detail).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.parse
from typing import Any

import httpx
import pytest

from ..oidc.server import OIDCProvider
from ..times import epoch
from .conftest import Setup
from .replicas import post, user_token

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.redis,
    pytest.mark.parametrize("mode", ["hub", "replicated"]),
]
_users = itertools.count()
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


def base(setup: Setup, mode: str) -> str:
    hub, (a, _) = setup
    return f"{hub.url}/hub/api/token-cache" if mode == "hub" else a.url


def other(setup: Setup, mode: str) -> str:
    """Where a second request goes: the other replica in the replicated mode."""
    hub, (_, b) = setup
    return f"{hub.url}/hub/api/token-cache" if mode == "hub" else b.url


def new_user(setup: Setup, mode: str, **model: Any) -> tuple[str, str]:
    name = f"{mode[:3]}{next(_users)}"
    return name, user_token(setup[0], name, **model)["token"]


def test_a_notebook_token_is_minted_once_and_reused(setup: Setup, mode: str) -> None:
    _, credential = new_user(setup, mode)
    first = post(base(setup, mode), "notebook", credential)
    assert first.status_code == 200, first.text
    again = post(other(setup, mode), "notebook", credential)
    one, two = first.json(), again.json()
    assert (one["cached"], two["cached"]) == (False, True)
    assert two["id"] == one["id"] and two["token"] == one["token"]
    assert sorted(one) == ["cached", "expires_at", "expires_in", "id", "scopes", "token"]
    assert 86_000 < one["expires_in"] <= 86_400
    # the notebook token works at the hub, with the notebook scopes
    r = httpx.get(
        f"{setup[0].url}/hub/api/user", headers={"Authorization": f"token {one['token']}"}
    )
    assert r.status_code == 200


def test_internal_tokens_per_service_and_scope_set(setup: Setup, mode: str) -> None:
    _, credential = new_user(setup, mode)
    full = post(base(setup, mode), "internal", credential, {"service": "dask"}).json()
    assert full["service"] == "dask"
    assert "access:services!service=dask" in full["scopes"]
    narrow = post(base(setup, mode), "internal", credential,
                  {"service": "dask", "scopes": ["read:users!user"]}).json()  # fmt: skip
    assert narrow["id"] != full["id"]
    again = post(other(setup, mode), "internal", credential,
                 {"service": "dask", "scopes": ["read:users!user"]}).json()  # fmt: skip
    assert again["id"] == narrow["id"] and again["cached"] is True


@pytest.mark.parametrize(
    ("route", "body", "status", "message"),
    [
        (
            "internal",
            {"service": "nope"},
            404,
            "No internal tokens are configured for service 'nope'",
        ),
        ("internal", {}, 400, "service is required"),
        (
            "internal",
            {"service": "dask", "scopes": ["admin:users"]},
            403,
            "Scopes not allowed for service 'dask': 'admin:users'",
        ),
        (
            "internal",
            {"service": "dask", "scopes": ["no-such-scope"]},
            400,
            "scopes[0] is not a known scope: 'no-such-scope'",
        ),
        ("notebook", {"bogus": 1}, 400, "Unknown field(s): 'bogus'; allowed: minimum_lifetime"),
        ("notebook", b"not json", 400, "Request body is not valid JSON"),
        (
            "notebook",
            {"minimum_lifetime": -1},
            400,
            "minimum_lifetime must be a positive integer (seconds)",
        ),
        (
            "notebook",
            {"minimum_lifetime": 99_999},
            422,
            "A new notebook token could live 86400 s, less than the 99999 s required: its parent "
            "session or lifetime policy ends sooner",
        ),
    ],
)
def test_refusals_are_the_same(
    setup: Setup, mode: str, route: str, body: Any, status: int, message: str
) -> None:
    _, credential = new_user(setup, mode)
    url = f"{base(setup, mode)}/{route}"
    headers = {"Authorization": f"token {credential}"}
    if isinstance(body, bytes):
        r = httpx.post(url, content=body, headers=headers)
    else:
        r = httpx.post(url, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json() == {"status": status, "message": message}


def test_wrong_methods_and_unknown_routes_are_worded_alike(setup: Setup, mode: str) -> None:
    _, credential = new_user(setup, mode)
    headers = {"Authorization": f"token {credential}"}
    wrong = httpx.get(f"{base(setup, mode)}/notebook", headers=headers)
    assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
    assert wrong.json() == {"status": 405, "message": "GET is not allowed here; use POST"}
    missing = httpx.get(f"{base(setup, mode)}/nope", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["message"].startswith("No token-cache route at ")


def test_a_child_never_outlives_its_parent(setup: Setup, mode: str) -> None:
    _, credential = new_user(setup, mode, expires_in=900)
    parent_end = time.time() + 900
    token = post(base(setup, mode), "notebook", credential).json()
    assert epoch(token["expires_at"]) <= parent_end + 1
    r = post(other(setup, mode), "notebook", credential, {"minimum_lifetime": 1800})
    assert r.status_code == 422, r.text
    assert "its parent session or lifetime policy ends sooner" in r.json()["message"]


def test_a_refused_minimum_does_not_refuse_concurrent_requests(setup: Setup, mode: str) -> None:
    _, credential = new_user(setup, mode)

    async def both() -> list[httpx.Response]:
        headers = {"Authorization": f"token {credential}"}
        async with httpx.AsyncClient(timeout=30, headers=headers) as client:
            calls = [
                client.post(f"{base(setup, mode)}/notebook", json=body)
                for body in [{"minimum_lifetime": 99_999}, {}] * 10
            ]
            return await asyncio.gather(*calls)

    answers = asyncio.run(both())
    assert [r.status_code for r in answers] == [422, 200] * 10
    assert len({r.json()["token"] for r in answers[1::2]}) == 1


def test_an_internal_token_ends_with_its_service_lifetime_and_its_parent(
    setup: Setup, mode: str
) -> None:
    _, credential = new_user(setup, mode)
    short = post(base(setup, mode), "internal", credential, {"service": "short"}).json()
    assert 110 < short["expires_in"] <= 120  # the service's lifetime
    _, brief = new_user(setup, mode, expires_in=900)
    capped = post(base(setup, mode), "internal", brief, {"service": "dask"}).json()
    assert 800 < capped["expires_in"] <= 900  # its parent ends before the service's 3600 s


def test_reuse_follows_the_minimum_lifetime_asked_for(setup: Setup, mode: str) -> None:
    _, credential = new_user(setup, mode)
    first = post(base(setup, mode), "internal", credential, {"service": "short"}).json()
    time.sleep(1.5)  # the token now has less than 119 s left
    body = {"service": "short", "minimum_lifetime": 119}
    fresh = post(other(setup, mode), "internal", credential, body).json()
    assert fresh["token"] != first["token"] and fresh["cached"] is False
    again = post(base(setup, mode), "internal", credential, body).json()
    assert again["token"] == fresh["token"] and again["cached"] is True
    # without a minimum, the newest token is served
    assert post(other(setup, mode), "internal", credential,
                {"service": "short"}).json()["token"] == fresh["token"]  # fmt: skip


def test_a_reset_of_everything_without_revoking(setup: Setup, mode: str) -> None:
    hub = setup[0]
    _, credential = new_user(setup, mode)
    first = post(base(setup, mode), "notebook", credential).json()
    admin = {"Authorization": f"token {hub.service_token}"}
    r = httpx.delete(base(setup, mode), headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["revoked"] == 0
    after = post(other(setup, mode), "notebook", credential).json()
    assert after["token"] != first["token"] and after["cached"] is False
    # not revoked: the first token still works at the hub until it expires
    who = httpx.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {first['token']}"})
    assert who.status_code == 200


def test_credentials_that_may_not_ask(setup: Setup, mode: str) -> None:
    url = f"{base(setup, mode)}/notebook"
    assert httpx.post(url).json() == {"status": 403, "message": "Missing or invalid credentials"}
    bad = httpx.post(url, headers={"Authorization": "token 0123456789abcdef0123456789abcdef"})
    assert bad.json() == {"status": 403, "message": "Missing or invalid credentials"}
    service = post(base(setup, mode), "notebook", setup[0].service_token)
    assert service.json() == {
        "status": 403,
        "message": "Only users' credentials can ask for tokens",
    }


def test_admin_reset_and_stats(setup: Setup, mode: str) -> None:
    hub = setup[0]
    name, credential = new_user(setup, mode)
    first = post(base(setup, mode), "notebook", credential).json()
    admin = {"Authorization": f"token {hub.service_token}"}
    user = {"Authorization": f"token {credential}"}
    refused = httpx.delete(f"{base(setup, mode)}/users/{name}", headers=user)
    assert refused.json() == {
        "status": 403,
        "message": "Requires admin:users or custom:token-cache:admin",
    }
    r = httpx.delete(f"{base(setup, mode)}/users/{name}?revoke=true", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["revoked"] == 1
    after = post(other(setup, mode), "notebook", credential).json()
    # ids are reused (SQLite gives the freed id to the next row): compare the tokens
    assert after["token"] != first["token"] and after["cached"] is False
    stats = httpx.get(f"{base(setup, mode)}/stats", headers=admin).json()
    assert stats["mints"] >= 2
    assert ("replica" in stats) == (mode == "replicated")
    assert httpx.get(f"{base(setup, mode)}/stats", headers=user).status_code == 403
    listing = httpx.get(f"{base(setup, mode)}/tokens", params={"user": name}, headers=admin).json()
    assert [item["id"] for item in listing] == [after["id"]]


def test_a_reset_that_runs_on_is_followed_by_its_handle(setup: Setup, mode: str) -> None:
    hub = setup[0]
    name, credential = new_user(setup, mode)
    first = post(base(setup, mode), "notebook", credential).json()
    admin = {"Authorization": f"token {hub.service_token}"}
    url = f"{base(setup, mode)}/users/{name}?revoke=true"
    r = httpx.delete(url, headers={**admin, "Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    handle = r.headers["Location"]
    prefix = urllib.parse.urlsplit(base(setup, mode)).path
    assert handle == f"{prefix}/resets/{r.json()['id']}"
    assert r.json()["user"] == name and r.json()["revoke"] is True
    deadline = time.monotonic() + 10
    while (state := httpx.get(f"{hub.url}{handle}", headers=admin).json())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (state["state"], state["revoked"], state["cleared"]) == ("done", 1, True)
    who = httpx.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {first['token']}"})
    assert who.status_code == 403
    user = {"Authorization": f"token {credential}"}
    assert httpx.get(f"{hub.url}{handle}", headers=user).status_code == 403
    missing = httpx.get(f"{base(setup, mode)}/resets/0123abcd", headers=admin)
    assert missing.status_code == 404 and "No such reset" in missing.json()["message"]


def test_a_token_deleted_in_the_hub_is_not_served_again(setup: Setup, mode: str) -> None:
    hub = setup[0]
    name, credential = new_user(setup, mode)
    first = post(base(setup, mode), "notebook", credential).json()
    assert post(other(setup, mode), "notebook", credential).json()["id"] == first["id"]
    with hub.admin(direct=True) as admin:
        assert admin.delete(f"users/{name}/tokens/{first['id']}").status_code == 204
    deadline = time.monotonic() + 1  # the replicated mode hears of it from the event stream
    while True:
        served = {post(url, "notebook", credential).json()["token"]
                  for url in (base(setup, mode), other(setup, mode))}  # fmt: skip
        if first["token"] not in served:
            break
        assert mode == "replicated" and time.monotonic() < deadline, "a deleted token is served"
        time.sleep(0.01)
    assert len(served) == 1


def test_a_revoked_credential_gets_nothing_and_its_children_end(setup: Setup, mode: str) -> None:
    hub = setup[0]
    name, credential = new_user(setup, mode)
    made = user_token(hub, name)
    child = post(base(setup, mode), "notebook", made["token"]).json()
    assert post(other(setup, mode), "notebook", made["token"]).json()["token"] == child["token"]
    with hub.admin(direct=True) as admin:
        assert admin.delete(f"users/{name}/tokens/{made['id']}").status_code == 204
    deadline = time.monotonic() + 1  # the replicated mode hears of it from the event stream
    for url in (base(setup, mode), other(setup, mode)):
        while (r := post(url, "notebook", made["token"])).status_code == 200:
            assert mode == "replicated" and time.monotonic() < deadline, "a revoked credential"
            time.sleep(0.01)
        assert r.json() == {"status": 403, "message": "Missing or invalid credentials"}
    # the cascade: the child died with its parent, in the hub
    who = httpx.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {child['token']}"})
    assert who.status_code == 403
    # the user's other credential is another session, untouched
    assert post(base(setup, mode), "notebook", credential).status_code == 200


# -- the OAuth routes: introspection (RFC 7662) and token exchange (RFC 8693) --------------

INTROSPECT = "custom:token-cache:introspect"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_introspection_answers_alike(setup: Setup, mode: str) -> None:
    hub, (a, _) = setup
    name, credential = new_user(setup, mode)
    url = f"{base(setup, mode)}/introspect"
    service = {"Authorization": f"token {a.token}"}  # a replica's token holds the scope
    answer = httpx.post(url, json={"token": credential}, headers=service)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    active = answer.json()
    assert (active["active"], active["username"], active["owner_kind"]) == (True, name, "user")
    # the hub's own answer, whichever mode answered (the event position aside)
    direct = httpx.post(f"{hub.url}/hub/api/token-cache/introspect", json={"token": credential},
                        headers=service).json()  # fmt: skip
    assert {**active, "last_event_id": 0} == {**direct, "last_event_id": 0}
    form = httpx.post(f"{other(setup, mode)}/introspect", headers={**service, **FORM},
                      content=urllib.parse.urlencode({"token": credential}))  # fmt: skip
    assert form.json()["token_id"] == active["token_id"]
    # every inactive answer is the same, whatever is wrong with the token
    for token in ["", "x" * 300, "é", "0" * 32, None, 5]:
        inactive = httpx.post(url, json={"token": token}, headers=service)
        assert (inactive.status_code, inactive.content) == (200, b'{"active": false}'), token
    # refusals, worded as the hub words them
    anonymous = httpx.post(url, json={"token": credential})
    assert anonymous.json() == {"status": 403, "message": f"Requires {INTROSPECT} (with a token)"}
    unscoped = httpx.post(url, json={"token": credential},
                          headers={"Authorization": f"token {credential}"})  # fmt: skip
    assert unscoped.json() == {"status": 403, "message": f"Requires {INTROSPECT}"}
    malformed = httpx.post(url, content=b"%zz&&", headers={**service, **FORM})
    assert malformed.status_code == 400
    assert malformed.json()["error"] == "invalid_request"


def test_an_introspected_token_deleted_in_the_hub_is_inactive(setup: Setup, mode: str) -> None:
    hub, (a, _) = setup
    name, _ = new_user(setup, mode)
    made = user_token(hub, name)
    service = {"Authorization": f"token {a.token}"}
    for url in (base(setup, mode), other(setup, mode)):
        r = httpx.post(f"{url}/introspect", json={"token": made["token"]}, headers=service)
        assert r.json()["active"] is True
    with hub.admin(direct=True) as admin:
        assert admin.delete(f"users/{name}/tokens/{made['id']}").status_code == 204
    deadline = time.monotonic() + 1  # the replicated mode hears of it from the event stream
    for url in (base(setup, mode), other(setup, mode)):
        while (r := httpx.post(f"{url}/introspect", json={"token": made["token"]},
                               headers=service)).json()["active"]:  # fmt: skip
            assert mode == "replicated" and time.monotonic() < deadline, "a deleted token"
            time.sleep(0.01)
        assert r.content == b'{"active": false}'


def test_token_exchange_answers_alike(setup: Setup, mode: str, oidc_provider: OIDCProvider) -> None:
    name, _ = new_user(setup, mode)
    upstream = oidc_provider.token(name, "urn:hub:opaque")
    body = {"grant_type": GRANT, "subject_token": upstream, "subject_token_type": ACCESS}
    first = httpx.post(f"{base(setup, mode)}/exchange", headers=FORM,
                       content=urllib.parse.urlencode(body))  # fmt: skip
    assert first.status_code == 200, first.text
    issued = first.json()
    assert (issued["issued_token_type"], issued["cached"]) == (ACCESS, False)
    who = httpx.get(f"{setup[0].url}/hub/api/user",
                    headers={"Authorization": f"token {issued['access_token']}"})  # fmt: skip
    assert who.json()["name"] == name
    again = httpx.post(f"{other(setup, mode)}/exchange", json=body)  # JSON too
    assert again.json()["cached"] is True and again.json()["id"] == issued["id"]
    wrong = httpx.post(f"{base(setup, mode)}/exchange", json={**body, "grant_type": "password"})
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "unsupported_grant_type",
                            "error_description": f"grant_type must be {GRANT}"}  # fmt: skip
    assert wrong.headers["Cache-Control"] == "no-store"
    forged = httpx.post(f"{base(setup, mode)}/exchange", json={**body, "subject_token": "x" * 40})
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_grant"


# -- bad input (issue 23): refused alike, never a 500, never served from another entry -------


def test_a_header_value_that_cannot_be_one_is_refused_alike(setup: Setup, mode: str) -> None:
    """A non-ASCII Authorization header: 403 at the hub, 500 at a replica on stats, tokens and
    the resets (httpx cannot encode it); non-ASCII Accept and Content-Type likewise."""
    hub = setup[0]
    name, _ = new_user(setup, mode)
    admin = f"token {hub.service_token}".encode()
    routes = [
        ("GET", "stats"),
        ("GET", "tokens"),
        ("DELETE", ""),
        ("DELETE", f"users/{name}"),
        ("POST", "notebook"),
        ("POST", "internal"),
    ]
    for method, route in routes:
        url = f"{base(setup, mode)}/{route}".rstrip("/")
        for header in (b"token caf\xe9", b"token \xe9" * 8, b"Bearer \xff\xfe"):
            r = httpx.request(method, url, headers=[(b"Authorization", header)])
            assert r.status_code == 403, (method, route, r.text)
            assert r.json() == {"status": 403, "message": "Missing or invalid credentials"}
        for other in (b"Accept", b"Content-Type"):
            r = httpx.request(method, url, headers=[(b"Authorization", admin), (other, b"\xe9/x")])
            assert r.status_code < 500, (method, route, other, r.text)
    exchange = httpx.post(
        f"{base(setup, mode)}/exchange",
        content=b"subject_token=x",
        headers=[(b"Content-Type", b"application/x-www-form-urlencod\xe9")],
    )
    assert exchange.status_code == 400 and exchange.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("warm", "scopes"),
    [
        (None, ["*"]),  # the edge cache's key for "no scopes named"
        (
            ["read:users!user", "access:services!service=dask"],
            ["access:services!service=dask read:users!user"],
        ),  # one string with a space
        (["read:users!user"], ["read:users!user\n"]),
        (["read:users!user"], [" read:users!user"]),
    ],
)
def test_scopes_that_are_not_scopes_never_share_an_entry(
    setup: Setup, mode: str, warm: list[str] | None, scopes: list[str]
) -> None:
    _, credential = new_user(setup, mode)
    body: dict[str, Any] = {"service": "dask"}
    first = post(
        base(setup, mode),
        "internal",
        credential,
        body if warm is None else {**body, "scopes": warm},
    )
    assert first.status_code == 200, first.text
    for url in (base(setup, mode), other(setup, mode)):
        r = post(url, "internal", credential, {**body, "scopes": scopes})
        assert r.status_code == 400, r.text
        assert r.json()["message"].startswith("scopes[0] is not a known scope: "), r.text


def test_a_repeated_query_parameter_is_refused_alike(setup: Setup, mode: str) -> None:
    hub = setup[0]
    name, _ = new_user(setup, mode)
    admin = {"Authorization": f"token {hub.service_token}"}
    for method, route, query in (
        ("GET", "tokens", [("user", name), ("user", "")]),
        ("GET", "tokens", [("limit", "1"), ("limit", "2")]),
        ("DELETE", f"users/{name}", [("revoke", "false"), ("revoke", "true")]),
    ):
        url = f"{base(setup, mode)}/{route}"
        r = httpx.request(method, url, params=query, headers=admin)
        assert r.status_code == 400, (route, r.text)
        assert r.json() == {"status": 400, "message": f"{query[0][0]} is given more than once"}
