"""Server sessions: a notebook token in each spawned server, revoked when it stops."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from jupyterhub import orm
from sqlalchemy import delete

from jupyter_token_cache.client import API_URL_ENV
from jupyter_token_cache.hub.lineage import LINEAGE

from .conftest import Hub


async def spawn(hub: Hub, admin: str, name: str) -> Any:
    r = await hub.api("POST", f"users/{name}/server", admin)
    assert r.status_code in (201, 202), r.text
    for _ in range(200):
        model = (await hub.api("GET", f"users/{name}", admin)).json()
        if model["servers"].get("", {}).get("ready"):
            return hub.app.users[name].spawner
        await asyncio.sleep(0.05)
    raise AssertionError("server did not start")


async def stop(hub: Hub, admin: str, name: str) -> None:
    r = await hub.api("DELETE", f"users/{name}/server", admin)
    assert r.status_code in (202, 204), r.text
    for _ in range(200):
        if not hub.app.users[name].spawner.active:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("server did not stop")


async def test_spawned_server_gets_its_session_notebook_token(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    spawner = await spawn(hub, admin, "alice")
    handed = spawner.environment["JUPYTERHUB_NOTEBOOK_TOKEN"]
    assert spawner.get_env()["JUPYTERHUB_NOTEBOOK_TOKEN"] == handed

    # the server, with its own API token, asks and gets the same one back
    r = (await hub.post("notebook", spawner.api_token, {})).json()
    assert r["token"] == handed and r["cached"] is True
    # the server's session grants the user's scopes, not its narrower server token's
    assert "read:users!user=alice" in r["scopes"]
    internal = await hub.post("internal", spawner.api_token, {"service": "dask"})
    assert internal.status_code == 200, internal.text


async def test_server_stop_revokes_its_session_tokens_only(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    spawner = await spawn(hub, admin, "alice")
    server_token = spawner.api_token
    await hub.post("internal", server_token, {"service": "dask"})
    elsewhere = (await hub.post("notebook", hub.token("alice"), {})).json()
    assert len(hub.minted_rows("alice")) == 3

    await stop(hub, admin, "alice")
    await asyncio.sleep(0.1)  # post_spawn_stop runs after the stop is reported
    assert [row.api_id for row in hub.minted_rows("alice")] == [elsewhere["id"]]

    # a new server: a new session, a new token
    spawner = await spawn(hub, admin, "alice")
    again = (await hub.post("notebook", spawner.api_token, {})).json()
    assert again["token"] == spawner.environment["JUPYTERHUB_NOTEBOOK_TOKEN"]
    await stop(hub, admin, "alice")


async def test_server_token_recognised_after_hub_forgets_it(hub: Hub) -> None:
    """After a hub restart spawners hold no token: the lineage table (or else the OAuth
    client's hashed secret) proves it is the server's."""
    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    spawner = await spawn(hub, admin, "alice")
    token = spawner.api_token
    first = (await hub.post("notebook", token, {})).json()
    spawner.api_token = ""
    again = (await hub.post("notebook", token, {})).json()
    assert again["token"] == first["token"] and again["cached"] is True
    # a server spawned before the table knew it: proved by its OAuth client, then recorded
    orm_token = orm.APIToken.find(hub.db, token)
    hub.db.execute(delete(LINEAGE).where(LINEAGE.c.token_id == orm_token.id))
    hub.db.commit()
    again = (await hub.post("notebook", token, {})).json()
    assert again["token"] == first["token"] and again["cached"] is True
    assert hub.app.authenticator.token_sessions.minter.lineage_of(orm_token).kind == "server"
    spawner.api_token = token
    await stop(hub, admin, "alice")


async def test_a_note_saying_server_proves_nothing(hub: Hub) -> None:
    hub.add_user("alice")
    user = hub.app.users["alice"]
    forged = user.new_api_token(note="Server at /user/alice/", scopes=["read:users:name!user"])
    r = (await hub.post("notebook", forged, {})).json()
    # no more than the forged token itself grants (JupyterHub adds its identify scopes)
    assert set(r["scopes"]) <= {"read:users:name!user=alice", "read:users:groups!user=alice"}


@pytest.mark.hub_config(TokenCache__api_url="http://proxy-public/services/token-cache/")
async def test_in_the_replicated_mode_servers_are_told_where_the_service_is(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    spawner = await spawn(hub, admin, "alice")
    assert spawner.get_env()[API_URL_ENV] == "http://proxy-public/services/token-cache/"
    assert "JUPYTERHUB_NOTEBOOK_TOKEN" in spawner.get_env()  # and the rest as before


async def test_no_sqlalchemy_warning_from_a_server_s_life(hub: Hub) -> None:
    """Our statements never put JupyterHub's ``JSONList`` columns (token scopes) where
    SQLAlchemy must build a cache key for their type, which has no ``cache_ok``: a hub
    log carried "SAWarning: TypeDecorator JSONList() will not produce a cache key" each
    time a server stopped. Every SAWarning is an error here, from a spawn to a reset."""
    from sqlalchemy.exc import SAWarning

    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SAWarning)
        spawner = await spawn(hub, admin, "alice")
        assert (await hub.post("internal", spawner.api_token, {"service": "dask"})).is_success
        await stop(hub, admin, "alice")
        await asyncio.sleep(0.1)  # post_spawn_stop runs after the stop is reported
        listed = await hub.http.get(
            "api/token-cache/tokens", headers={"Authorization": f"token {admin}"}
        )
        assert listed.is_success, listed.text
        reset = await hub.http.delete(
            "api/token-cache",
            params={"revoke": "true"},
            headers={"Authorization": f"token {admin}"},
        )
        assert reset.is_success, reset.text
    # post_spawn_stop's own errors are logged by the hub, not raised here
    assert not hub.minted_rows("alice"), "the stop did not revoke what was minted for it"
