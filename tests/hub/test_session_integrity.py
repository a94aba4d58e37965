"""Session integrity: a minted token stays bound to its session, whatever happens meanwhile."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
from jupyterhub import orm
from sqlalchemy import text

from ..times import epoch
from .conftest import Hub
from .test_servers import spawn, stop


async def status(hub: Hub, token: str) -> int:
    r = await hub.http.get("api/user", headers={"Authorization": f"token {token}"})
    return r.status_code


async def test_rename_then_stop_revokes_both_tokens(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    spawner = await spawn(hub, admin, "alice")
    notebook = spawner.environment["JUPYTERHUB_NOTEBOOK_TOKEN"]
    hub.secrets.add(notebook)
    internal = (await hub.post("internal", spawner.api_token, {"service": "dask"})).json()["token"]
    r = await hub.api("PATCH", "users/alice", admin, json={"name": "alice2"})
    assert r.status_code == 200, r.text
    assert (await hub.post("notebook", internal, {})).status_code == 403  # still internal
    await stop(hub, admin, "alice2")
    await asyncio.sleep(0.1)
    assert await status(hub, notebook) == 403
    assert await status(hub, internal) == 403


async def test_revoke_after_rename_catches_everything(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    parent = hub.token("alice")
    tokens = [
        (await hub.post("notebook", parent, {})).json()["token"],
        (await hub.post("internal", parent, {"service": "dask"})).json()["token"],
    ]
    await hub.api("PATCH", "users/alice", admin, json={"name": "alice2"})
    tokens.append((await hub.post("notebook", parent, {})).json()["token"])  # minted after
    r = await hub.http.delete(
        "api/token-cache/users/alice2?revoke=true", headers={"Authorization": f"token {admin}"}
    )
    assert r.status_code == 200 and r.json()["revoked"] == len(set(tokens))
    assert [await status(hub, t) for t in tokens] == [403] * len(tokens)


async def test_an_orphan_cannot_renew_itself(hub: Hub) -> None:
    """The parent goes where no flush sees it (a bulk statement): its child must still die."""
    parent = hub.token("alice")  # no expiry
    child = (await hub.post("notebook", parent, {})).json()
    parent_row = orm.APIToken.find(hub.db, parent)
    hub.db.execute(text("DELETE FROM api_tokens WHERE id = :id"), {"id": parent_row.id})
    hub.db.commit()
    hub.db.expire_all()
    assert await status(hub, parent) == 403
    r = await hub.post("notebook", child["token"], {"minimum_lifetime": 86000})
    assert r.status_code == 403, r.text
    r = await hub.post("internal", child["token"], {"service": "dask"})
    assert r.status_code == 403
    assert await status(hub, child["token"]) == 403  # and it was revoked on the spot


async def test_deleting_the_parent_kills_the_orphan_at_once(hub: Hub) -> None:
    parent = hub.token("alice")
    child = (await hub.post("notebook", parent, {})).json()
    parent_id = orm.APIToken.find(hub.db, parent).api_id
    assert (await hub.api("DELETE", f"users/alice/tokens/{parent_id}", parent)).status_code == 204
    assert await status(hub, child["token"]) == 403
    r = await hub.post("notebook", child["token"], {"minimum_lifetime": 86000})
    assert r.status_code == 403


async def test_the_sweep_revokes_what_no_flush_saw(hub: Hub) -> None:
    parent = hub.token("alice")
    child = (await hub.post("notebook", parent, {})).json()
    hub.db.execute(
        text("DELETE FROM api_tokens WHERE id = :id"), {"id": orm.APIToken.find(hub.db, parent).id}
    )
    hub.db.commit()
    assert await hub.app.authenticator.token_observer.sweep() == 1
    assert await status(hub, child["token"]) == 403


@pytest.mark.hub_config(TokenCache__enabled=False)  # every request mints
async def test_no_mint_survives_a_server_stop(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests authenticated before a stop whose mints land during or after it.

    Each mint is held back a random 0-500 ms after its request was authenticated and
    its session resolved, so that mints fall before, during and after the stop's
    revocation — the interleaving that left survivors before.
    """
    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    minter = hub.app.authenticator.token_service.minter
    mint, rng = minter.mint, random.Random(4)

    async def late_mint(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(rng.random() / 2)
        return await mint(*args, **kwargs)

    monkeypatch.setattr(minter, "mint", late_mint)
    survivors = served = 0
    for _ in range(20):
        spawner = await spawn(hub, admin, "alice")

        async def ask(server_token: str = spawner.api_token) -> str | None:
            r = await hub.post("notebook", server_token, {})
            return r.json()["token"] if r.status_code == 200 else None

        async def stop_soon() -> None:
            await asyncio.sleep(0.02)
            await stop(hub, admin, "alice")

        answers = await asyncio.gather(*(ask() for _ in range(10)), stop_soon())
        await asyncio.sleep(0.6)  # every held-back mint has landed
        for token in filter(None, answers[:-1]):
            served += 1
            hub.secrets.add(token)
            survivors += await status(hub, token) == 200
        assert hub.minted_rows("alice") == []
    print(f"stop race: {served} tokens served during 20 stops, {survivors} alive after")  # noqa: T201
    assert survivors == 0 and served > 0


async def test_minimum_lifetime_is_exact(hub: Hub) -> None:
    parent = hub.token("alice")
    lifetime = hub.app.authenticator.token_cache.notebook_lifetime
    answers = [
        await hub.post("notebook", parent, {"minimum_lifetime": lifetime}) for _ in range(20)
    ]
    assert {r.status_code for r in answers} == {422}  # no fresh token can have it when served
    assert hub.minted_rows("alice") == []
    asked = lifetime - 60
    answers = [await hub.post("notebook", parent, {"minimum_lifetime": asked}) for _ in range(20)]
    assert {r.status_code for r in answers} == {200}
    assert len({r.json()["token"] for r in answers}) == 1 and len(hub.minted_rows("alice")) == 1
    for r in answers:
        assert epoch(r.json()["expires_at"]) - time.time() >= asked - 1  # measured after the answer


@pytest.mark.parametrize(
    "scope",
    ["read:users!user=", "read:users!group=", "access:servers!server=", "read:users:name!service="],
)
async def test_empty_filters_are_400(hub: Hub, scope: str) -> None:
    r = await hub.post("internal", hub.token("alice"), {"service": "dask", "scopes": [scope]})
    assert r.status_code == 400 and r.json()["message"]


@pytest.mark.parametrize("opening", ["[", '{"a":'])
async def test_deeply_nested_bodies_are_400(hub: Hub, opening: str) -> None:
    for route in ("notebook", "internal"):
        r = await hub.post(route, hub.token("alice"), opening * 100_000)
        assert (
            r.status_code == 400
            and "nested" in r.json()["message"]
            or "JSON" in r.json()["message"]
        )


@pytest.mark.hub_config(TokenCache__notebook_scopes=["access:servers!user"])
async def test_a_server_token_yields_no_more_than_the_hub_gave_it(hub: Hub) -> None:
    """Default: server token scopes plus notebook_scopes; never the user's other scopes."""
    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    spawner = await spawn(hub, admin, "alice")
    r = await hub.post(
        "internal", spawner.api_token, {"service": "dask", "scopes": ["read:users!user"]}
    )
    assert r.status_code == 403  # alice holds it, but neither her server nor its notebook token
    notebook = (await hub.post("notebook", spawner.api_token, {})).json()
    assert set(notebook["scopes"]) <= {"access:servers!user=alice", "access:servers!server=alice/"}
    await stop(hub, admin, "alice")


@pytest.mark.hub_config(
    TokenCache__notebook_scopes=["access:servers!user"], TokenCache__server_session_scopes="user"
)
async def test_a_server_token_acts_as_the_user_when_configured(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    spawner = await spawn(hub, admin, "alice")
    r = await hub.post(
        "internal", spawner.api_token, {"service": "dask", "scopes": ["read:users!user"]}
    )
    assert r.status_code == 200, r.text
    await stop(hub, admin, "alice")


async def test_a_bulk_delete_is_followed_like_any_other(hub: Hub) -> None:
    """``query(...).delete()`` bypasses the unit of work: the observer reads the rows first."""
    parent = hub.token("alice")
    child = (await hub.post("notebook", parent, {})).json()
    grandchild = (await hub.post("internal", child["token"], {"service": "dask"})).json()
    parent_id = orm.APIToken.find(hub.db, parent).id
    broker = hub.app.authenticator.token_events
    before = broker.last_id
    hub.db.query(orm.APIToken).filter(orm.APIToken.id == parent_id).delete()
    hub.db.commit()
    assert await status(hub, child["token"]) == 403
    assert await status(hub, grandchild["token"]) == 403
    ended = {
        e.token_ids[0]: e.reason
        for e in broker._history
        if e.id > before and e.type == "token-revoked"
    }
    assert ended == {
        f"a{parent_id}": "deleted",
        child["id"]: "parent-revoked",
        grandchild["id"]: "parent-revoked",
    }


async def test_an_entry_written_by_another_version_is_a_miss(hub: Hub) -> None:
    """After an upgrade a shared backend may hold entries of the old shape: never a 500."""
    parent = hub.token("alice")
    first = (await hub.post("notebook", parent, {})).json()
    store = hub.app.authenticator.token_cache.store
    ((key, (value, *rest)),) = store._data.items()
    store._data[key] = (tuple(value)[:4], *rest)  # the 4 fields entries had before
    again = await hub.post("notebook", parent, {})
    assert again.status_code == 200 and again.json()["cached"] is False
    assert again.json()["token"] != first["token"]
