"""Bad input: a clear JSON 4xx in JupyterHub's style, never a 500, never a token in a log."""

from __future__ import annotations

import logging

import pytest

from .conftest import Hub

BAD_BODIES = [
    ("notebook", b"{not json", 400, "Request body is not valid JSON"),
    ("notebook", b"\xff\xfe", 400, "Request body is not valid JSON"),
    ("notebook", b"[]", 400, "Request body must be a JSON object"),
    ("notebook", b'"x"', 400, "Request body must be a JSON object"),
    (
        "notebook",
        b'{"minimum_lifetime": "300"}',
        400,
        "minimum_lifetime must be a positive integer (seconds)",
    ),
    (
        "notebook",
        b'{"minimum_lifetime": -1}',
        400,
        "minimum_lifetime must be a positive integer (seconds)",
    ),
    (
        "notebook",
        b'{"minimum_lifetime": true}',
        400,
        "minimum_lifetime must be a positive integer (seconds)",
    ),
    (
        "notebook",
        b'{"minimum_lifetime": 1.5}',
        400,
        "minimum_lifetime must be a positive integer (seconds)",
    ),
    (
        "notebook",
        b'{"minimum_lifetime": 1e308}',
        400,
        "minimum_lifetime must be a positive integer (seconds)",
    ),
    (
        "notebook",
        b'{"minimum_lifetime": 99999999999999999999}',
        400,
        "minimum_lifetime must be a positive integer (seconds)",
    ),
    (
        "notebook",
        b'{"service": "dask"}',
        400,
        "Unknown field(s): 'service'; allowed: minimum_lifetime",
    ),
    ("internal", b"{}", 400, "service is required"),
    ("internal", b'{"service": 3}', 400, "service must be a service name"),
    ("internal", b'{"service": ""}', 400, "service must be a service name"),
    (
        "internal",
        b'{"service": "dask", "scopes": "read:users"}',
        400,
        "scopes must be a non-empty list of scopes",
    ),
    (
        "internal",
        b'{"service": "dask", "scopes": []}',
        400,
        "scopes must be a non-empty list of scopes",
    ),
    (
        "internal",
        b'{"service": "dask", "scopes": [null]}',
        400,
        "scopes must be a non-empty list of scopes",
    ),
    (
        "internal",
        b'{"service": "dask", "scopes": ["no-such-scope"]}',
        400,
        "scopes[0] is not a known scope: 'no-such-scope'",
    ),
    ("internal", b'{"service": "dask", "scopes": ["read:users!bogus=x"]}', 400, None),
    (
        "internal",
        b'{"service": "dask", "extra": 1}',
        400,
        "Unknown field(s): 'extra'; allowed: service, scopes, minimum_lifetime",
    ),
]


@pytest.mark.parametrize(("route", "body", "status", "message"), BAD_BODIES)
async def test_bad_bodies(
    hub: Hub, route: str, body: bytes, status: int, message: str | None
) -> None:
    r = await hub.post(route, hub.token("alice"), body)
    assert r.status_code == status, r.text
    assert r.json()["status"] == status
    if message is not None:
        assert r.json()["message"] == message
    assert hub.minted_rows("alice") == []


@pytest.mark.parametrize("route", ["notebook", "internal"])
async def test_no_or_bad_credentials_are_403(hub: Hub, route: str) -> None:
    for headers in ({}, {"Authorization": "token not-a-real-token"}, {"Authorization": "Bearer x"}):
        r = await hub.http.post(
            f"api/token-cache/{route}", json={"service": "dask"}, headers=headers
        )
        assert r.status_code == 403 and r.json()["status"] == 403


async def test_services_cannot_ask_for_user_tokens(hub: Hub) -> None:
    from jupyterhub import orm

    service = orm.Service(name="svc")
    hub.db.add(service)
    hub.db.commit()
    token = orm.APIToken.new(service=service, scopes=["inherit"])
    r = await hub.post("notebook", token, {})
    assert r.status_code == 403
    assert r.json()["message"] == "Only users' credentials can ask for tokens"


async def test_no_token_in_any_log_line(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    parent = hub.token("alice")
    secrets = {parent}
    for body in ({}, {"minimum_lifetime": 10**9}, {"service": parent}):
        r = await hub.post("notebook", parent, body)
        if r.status_code == 200:
            secrets.add(r.json()["token"])
    for body in ({"service": "dask"}, {"service": "dask", "scopes": [parent]}, {"service": parent}):
        r = await hub.post("internal", parent, body)
        if r.status_code == 200:
            secrets.add(r.json()["token"])
        assert parent not in r.text
    await hub.post("notebook", parent, b"{" + parent.encode())
    admin = hub.token("admin", admin=True)
    await hub.http.delete(
        "api/token-cache?revoke=true", headers={"Authorization": f"token {admin}"}
    )
    assert len(secrets) >= 3
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "Minted notebook token" in text  # the log is there...
    for secret in secrets:
        assert secret not in text  # ...but no secret in it


@pytest.mark.parametrize(
    ("method", "route", "status", "message"),
    [
        ("GET", "notebook", 405, "GET is not allowed here; use POST"),
        ("POST", "stats", 405, "POST is not allowed here; use GET"),
        ("POST", "users/alice", 405, "POST is not allowed here; use DELETE"),
        ("GET", "nope", 404, "No token-cache route at "),
        ("DELETE", "users/", 404, "No token-cache route at "),
        ("DELETE", "users/a/b", 404, "No token-cache route at "),
    ],
)
async def test_wrong_methods_and_unknown_routes_say_so(
    hub: Hub, method: str, route: str, status: int, message: str
) -> None:
    admin = hub.token("admin", admin=True)
    r = await hub.http.request(
        method, f"api/token-cache/{route}", headers={"Authorization": f"token {admin}"}
    )
    assert r.status_code == status
    assert r.json()["status"] == status and r.json()["message"].startswith(message)
    if status == 405:
        assert r.headers["Allow"] == message.rsplit(" ", 1)[-1]
