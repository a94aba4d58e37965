"""Admin routes: stats and resets, for admin:users or the custom token-cache scope only."""

from __future__ import annotations

import pytest

from ..times import timeless
from .conftest import Hub

OPERATOR_ROLE = {
    "name": "token-cache-operator",
    "scopes": ["custom:token-cache:admin"],
    "users": ["operator"],
}
ADMIN_ROUTES = [
    ("GET", "stats"),
    ("GET", "tokens"),
    ("DELETE", ""),
    ("DELETE", "users/alice"),
    ("DELETE", "?revoke=true"),
]


def url(route: str) -> str:
    return f"api/token-cache/{route}".replace("/?", "?").rstrip("/")


async def admin_call(hub: Hub, method: str, route: str, token: str):  # type: ignore[no-untyped-def]
    return await hub.http.request(method, url(route), headers={"Authorization": f"token {token}"})


async def test_stats(hub: Hub) -> None:
    parent = hub.token("alice")
    await hub.post("notebook", parent, {})
    await hub.post("notebook", parent, {})
    await hub.post("internal", parent, {"service": "dask"})
    r = await admin_call(hub, "GET", "stats", hub.token("admin", admin=True))
    assert r.status_code == 200
    stats = r.json()
    assert {k: stats[k] for k in ("backend", "enabled", "hits", "misses", "mints", "errors", "entries")} == {
        "backend": "memory", "enabled": True, "hits": 1, "misses": 2, "mints": 2, "errors": 0, "entries": 2}  # fmt: skip
    assert stats["by_kind"]["notebook"]["mints"] == 1 and stats["by_kind"]["internal"]["mints"] == 1
    assert stats["health"]["available"] is True and stats["health"]["last_error"] is None


PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}


async def test_tokens_lists_what_the_cache_minted_and_nothing_secret(hub: Hub) -> None:
    alice, bob = hub.token("alice"), hub.token("bob")
    a_nb = (await hub.post("notebook", alice, {})).json()
    a_in = (await hub.post("internal", alice, {"service": "dask"})).json()
    b_nb = (await hub.post("notebook", bob, {})).json()
    admin = {"Authorization": f"token {hub.token('admin', admin=True)}"}
    r = await hub.http.get(url("tokens"), headers=admin)
    assert r.status_code == 200
    items = r.json()
    assert [i["id"] for i in items] == [a_nb["id"], a_in["id"], b_nb["id"]]
    first = items[0]
    assert set(first) == {"id", "user", "kind", "service", "session_kind", "server", "scopes",
                          "created", "expires_at", "last_activity"}  # fmt: skip
    assert (first["user"], first["kind"], first["service"], first["session_kind"]) == (
        "alice", "notebook", None, "token")  # fmt: skip
    assert first["expires_at"] == a_nb["expires_at"] and first["created"].endswith("Z")
    assert items[1]["service"] == "dask" and items[1]["kind"] == "internal"
    for body in (a_nb, a_in, b_nb):
        assert body["token"] not in r.text
    assert all(row.hashed not in r.text for row in hub.minted_rows("alice") + hub.minted_rows("bob"))

    async def ids(query: str) -> list[str]:
        return [i["id"] for i in (await hub.http.get(url(f"tokens?{query}"), headers=admin)).json()]

    assert await ids("user=alice") == [a_nb["id"], a_in["id"]]
    assert await ids("kind=notebook") == [a_nb["id"], b_nb["id"]]
    assert await ids("service=dask") == [a_in["id"]]
    assert await ids("user=bob&kind=internal") == []
    assert await ids("user=nobody") == []
    bad = await hub.http.get(url("tokens?kind=server"), headers=admin)
    assert bad.status_code == 400 and bad.json()["message"] == "kind must be notebook or internal"


async def test_tokens_paginate_as_jupyterhub_does(hub: Hub) -> None:
    for name in ("alice", "bob", "carol"):
        await hub.post("notebook", hub.token(name), {})
    admin = {"Authorization": f"token {hub.token('admin', admin=True)}", **PAGINATED}
    page = (await hub.http.get(url("tokens?limit=2"), headers=admin)).json()
    assert [i["user"] for i in page["items"]] == ["alice", "bob"]
    assert page["_pagination"]["total"] == 3 and page["_pagination"]["limit"] == 2
    assert page["_pagination"]["next"]["offset"] == 2
    rest = (await hub.http.get(url("tokens?limit=2&offset=2"), headers=admin)).json()
    assert [i["user"] for i in rest["items"]] == ["carol"] and rest["_pagination"]["next"] is None
    bad = await hub.http.get(url("tokens?limit=many"), headers=admin)
    assert bad.status_code == 400


async def test_a_revoked_token_leaves_the_listing(hub: Hub) -> None:
    alice = hub.token("alice")
    minted = (await hub.post("notebook", alice, {})).json()
    admin = {"Authorization": f"token {hub.token('admin', admin=True)}"}
    r = await hub.http.delete(f"api/users/alice/tokens/{minted['id']}", headers=admin)
    assert r.status_code == 204
    assert (await hub.http.get(url("tokens"), headers=admin)).json() == []


async def test_reset_all_then_the_next_request_mints(hub: Hub) -> None:
    alice, bob = hub.token("alice"), hub.token("bob")
    a1 = (await hub.post("notebook", alice, {})).json()
    b1 = (await hub.post("notebook", bob, {})).json()
    r = await admin_call(hub, "DELETE", "", hub.token("admin", admin=True))
    assert r.status_code == 200 and r.json() == {"cleared": True, "revoked": 0}
    a2 = (await hub.post("notebook", alice, {})).json()
    b2 = (await hub.post("notebook", bob, {})).json()
    assert not a2["cached"] and not b2["cached"]
    assert a2["token"] != a1["token"] and b2["token"] != b1["token"]
    assert len(hub.minted_rows("alice")) == 2  # reset without revoke leaves the old ones valid


async def test_reset_one_user_with_revoke(hub: Hub) -> None:
    alice, bob = hub.token("alice"), hub.token("bob")
    a1 = (await hub.post("notebook", alice, {})).json()
    b1 = (await hub.post("notebook", bob, {})).json()
    r = await admin_call(hub, "DELETE", "users/alice?revoke=true", hub.token("admin", admin=True))
    assert r.status_code == 200 and r.json() == {"cleared": True, "revoked": 1}
    assert hub.minted_rows("alice") == []
    me = await hub.http.get("api/user", headers={"Authorization": f"token {a1['token']}"})
    assert me.status_code == 403  # the revoked token no longer works in the hub
    assert timeless((await hub.post("notebook", bob, {})).json()) == timeless({**b1, "cached": True})
    a2 = (await hub.post("notebook", alice, {})).json()
    assert not a2["cached"] and a2["token"] != a1["token"]


async def test_reset_all_with_revoke(hub: Hub) -> None:
    await hub.post("notebook", hub.token("alice"), {})
    await hub.post("internal", hub.token("bob"), {"service": "dask"})
    r = await admin_call(hub, "DELETE", "?revoke=true", hub.token("admin", admin=True))
    assert r.json()["revoked"] == 2
    assert hub.minted_rows("alice") == hub.minted_rows("bob") == []


async def test_reset_unknown_user_is_404_and_bad_revoke_400(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    assert (await admin_call(hub, "DELETE", "users/nobody", admin)).status_code == 404
    assert (await admin_call(hub, "DELETE", "?revoke=maybe", admin)).status_code == 400


@pytest.mark.parametrize(("method", "route"), ADMIN_ROUTES)
async def test_non_admin_gets_403_on_every_admin_route(hub: Hub, method: str, route: str) -> None:
    for token in (
        hub.token("alice"),
        (await hub.post("notebook", hub.token("alice"), {})).json()["token"],
    ):
        r = await admin_call(hub, method, route, token)
        assert r.status_code == 403, (route, r.text)
        assert r.json()["message"] == "Requires admin:users or custom:token-cache:admin"
    r = await hub.http.request(method, url(route))
    assert r.status_code == 403


@pytest.mark.hub_config(JupyterHub__load_roles=[OPERATOR_ROLE])
@pytest.mark.parametrize(("method", "route"), ADMIN_ROUTES)
async def test_custom_scope_grants_admin_routes_to_an_operator(
    hub: Hub, method: str, route: str
) -> None:
    hub.add_user("alice")
    r = await admin_call(hub, method, route, hub.token("operator"))
    assert r.status_code == 200, r.text
