"""POST /hub/api/token-cache/introspect: RFC 7662 answers, one shape for every inactive token."""

from __future__ import annotations

import time
import urllib.parse

import pytest

from ..times import epoch
from .conftest import Hub
from .test_servers import spawn, stop

CHECKER = "checker-secret-token-0123456789abcdef"
INTROSPECT_ROLE = {
    "name": "introspector",
    "scopes": ["custom:token-cache:introspect"],
    "services": ["checker"],
}
with_checker = pytest.mark.hub_config(
    JupyterHub__services=[{"name": "checker", "api_token": CHECKER}],
    JupyterHub__load_roles=[INTROSPECT_ROLE],
)


async def introspect(hub: Hub, token: object, *, form: bool = False, caller: str = CHECKER) -> dict:  # type: ignore[type-arg]
    if form:
        body = urllib.parse.urlencode({"token": token}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        r = await hub.post("introspect", caller, body, headers=headers)
    else:
        r = await hub.post("introspect", caller, {"token": token})
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    return r.json()  # type: ignore[no-any-return]


@with_checker
async def test_an_active_token_is_described_as_the_hub_sees_it(hub: Hub) -> None:
    hub.secrets.add(CHECKER)
    hub.add_user("alice")
    hub.app.users["alice"].orm_user.groups  # noqa: B018
    token = hub.token("alice", scopes=["read:users!user", "access:servers!user"], expires_in=600)
    broker = hub.app.authenticator.token_events
    before = broker.position()
    answer = await introspect(hub, token)
    user_model = (await hub.api("GET", "user", token)).json()
    assert answer["active"] is True
    assert answer["username"] == "alice" and answer["owner_kind"] == "user"
    assert answer["scopes"] == user_model["scopes"]
    assert answer["scope"] == " ".join(user_model["scopes"])
    assert answer["token_id"] == user_model["token_id"]
    assert answer["kind"] == "api" and answer["groups"] == [] and answer["admin"] is False
    assert time.time() + 590 < answer["exp"] <= time.time() + 600
    assert answer["iat"] <= time.time()
    assert before <= answer["last_event_id"] <= broker.position()  # the position at the lookup
    again = await introspect(hub, token, form=True)
    assert again.pop("last_event_id") >= answer.pop("last_event_id") and again == answer


@with_checker
async def test_minted_and_server_tokens_say_what_they_are(hub: Hub) -> None:
    hub.secrets.add(CHECKER)
    admin = hub.token("admin", admin=True)
    alice = hub.token("alice")
    notebook = (await hub.post("notebook", alice, {})).json()
    internal = (await hub.post("internal", alice, {"service": "dask"})).json()
    spawner = await spawn(hub, admin, "alice")
    answers = {kind: await introspect(hub, t) for kind, t in
               (("notebook", notebook["token"]), ("internal", internal["token"]), ("server", spawner.api_token))}  # fmt: skip
    for kind, answer in answers.items():
        assert answer["kind"] == kind and answer["username"] == "alice"
    assert answers["internal"]["service"] == "dask" and "service" not in answers["notebook"]
    assert answers["notebook"]["exp"] == int(epoch(notebook["expires_at"]))
    await stop(hub, admin, "alice")
    assert await introspect(hub, spawner.api_token) == {"active": False}


@with_checker
async def test_every_inactive_token_gets_the_same_answer(hub: Hub) -> None:
    hub.secrets.add(CHECKER)
    admin = hub.token("admin", admin=True)
    deleted = (
        (await hub.api("POST", "users/alice/tokens", admin, json={})).json()
        if hub.add_user("alice")
        else None
    )
    assert deleted is not None
    hub.secrets.add(deleted["token"])
    await hub.api("DELETE", f"users/alice/tokens/{deleted['id']}", admin)
    expired = hub.token("alice", expires_in=1)
    time.sleep(1.1)
    cases = [
        deleted["token"],
        expired,
        "0" * 32,
        "",
        "x",
        "a" * 100_000,
        "é" * 32,
        None,
        42,
        ["t"],
        {"t": 1},
    ]
    for case in cases:
        r = await hub.post("introspect", CHECKER, {"token": case})
        assert (r.status_code, r.content) == (200, b'{"active": false}'), case
    for body in (b"{}", b""):
        r = await hub.post("introspect", CHECKER, body)
        assert (r.status_code, r.json()) == (200, {"active": False})
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for body in (b"", b"other=1"):
        r = await hub.post("introspect", CHECKER, body, headers=form)
        assert (r.status_code, r.json()) == (200, {"active": False}), body
    # a repeated parameter is no token at all: refused, as RFC 6749 section 3.2 says
    r = await hub.post("introspect", CHECKER, b"token=a&token=b", headers=form)
    assert (r.status_code, r.json()) == (
        400,
        {"error": "invalid_request", "error_description": "token is given more than once"},
    )
    stats = (await hub.api("GET", "token-cache/stats", admin)).json()["introspections"]
    assert stats["active"] == 0 and stats["inactive"] == stats["requests"] == len(cases) + 4


@with_checker
async def test_a_body_that_is_no_request_is_an_rfc_error(hub: Hub) -> None:
    hub.secrets.add(CHECKER)
    for body, headers in ((b"{not json", {}), (b"[" * 100_000, {}),
                          (b"\xff\xfe", {"Content-Type": "application/x-www-form-urlencoded"}),
                          (b"token", {"Content-Type": "application/x-www-form-urlencoded"})):  # fmt: skip
        r = await hub.post("introspect", CHECKER, body, headers=headers)
        assert r.status_code == 400, body
        assert r.json()["error"] == "invalid_request"


@with_checker
async def test_only_holders_of_the_introspect_scope_may_ask(hub: Hub) -> None:
    hub.secrets.add(CHECKER)
    alice = hub.token("alice")
    admin = hub.token("admin", admin=True)
    for caller in (alice, admin):
        r = await hub.post("introspect", caller, {"token": alice})
        assert r.status_code == 403
        assert r.json()["message"] == "Requires custom:token-cache:introspect"
    r = await hub.http.post("api/token-cache/introspect", json={"token": alice})
    assert r.status_code == 403
    browser = await hub.login("alice")
    r = await browser.post("api/token-cache/introspect", json={"token": alice})
    assert r.status_code == 403
    await browser.aclose()
