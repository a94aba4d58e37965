"""Exact revocation: ids are not identities, children die with their parent, every end is an event."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from jupyterhub import orm

from .conftest import Hub
from .events import reading
from .test_servers import spawn, stop

EVENTS_ROLE = {
    "name": "revocation-follower",
    "scopes": ["custom:token-cache:events"],
    "services": ["follower"],
}


def row_of(hub: Hub, token_id: str) -> orm.APIToken | None:
    hub.db.expire_all()
    return hub.db.get(orm.APIToken, int(token_id[1:]))


async def authenticates(hub: Hub, token: str) -> bool:
    r = await hub.http.get("api/user", headers={"Authorization": f"token {token}"})
    return r.status_code == 200


async def test_a_deleted_token_is_never_served_after_its_id_is_reused(hub: Hub) -> None:
    """The four steps of the issue: SQLite hands a3's id to bob's next token."""
    admin = hub.token("admin", admin=True)
    alice = hub.token("alice")
    first = (await hub.post("notebook", alice, {})).json()
    assert first["cached"] is False
    assert (await hub.api("DELETE", f"users/alice/tokens/{first['id']}", admin)).status_code == 204
    hub.add_user("bob")
    reused = (await hub.api("POST", "users/bob/tokens", admin, json={})).json()
    hub.secrets.add(reused["token"])
    if hub.db.get_bind().dialect.name == "sqlite":
        assert reused["id"] == first["id"]  # the id really is reused: the case at hand
    again = (await hub.post("notebook", alice, {})).json()
    assert again["token"] != first["token"] and again["cached"] is False
    assert await authenticates(hub, again["token"])
    assert not await authenticates(hub, first["token"])


async def test_a_token_inheriting_a_stopped_servers_id_gets_only_its_own_scopes(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    spawner = await spawn(hub, admin, "alice")
    server_token = spawner.api_token
    assert (await hub.post("notebook", server_token, {})).status_code == 200
    server_id = orm.APIToken.find(hub.db, server_token).id
    await stop(hub, admin, "alice")
    hub.db.expire_all()
    assert hub.db.get(orm.APIToken, server_id) is None
    # a narrow user token that inherits the id, with the note a server token has
    user = hub.app.users["alice"]
    narrow = user.new_api_token(note="Server at /user/alice/", scopes=["read:users:name!user"])
    hub.secrets.add(narrow)
    narrow_row = orm.APIToken.find(hub.db, narrow)
    if hub.db.get_bind().dialect.name == "sqlite":
        assert narrow_row.id == server_id
    r = await hub.post("notebook", narrow, {})
    assert r.status_code in (200, 403), r.text
    if r.status_code == 200:
        assert set(r.json()["scopes"]) <= {
            "read:users:name!user=alice",
            "read:users:groups!user=alice",
        }
    internal = await hub.post("internal", narrow, {"service": "dask"})
    assert internal.status_code == 200
    assert set(internal.json()["scopes"]) <= {
        "read:users:name!user=alice",
        "read:users:groups!user=alice",
    }


async def test_deleting_a_parent_deletes_its_children_and_theirs(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    parent = hub.token("alice")
    notebook = (await hub.post("notebook", parent, {})).json()
    internal = (await hub.post("internal", parent, {"service": "dask"})).json()
    grandchild = (await hub.post("internal", notebook["token"], {"service": "short"})).json()
    other = (await hub.post("notebook", hub.token("alice"), {})).json()
    parent_id = orm.APIToken.find(hub.db, parent).api_id
    cache = hub.app.authenticator.token_cache
    entries = cache.stats()["entries"]

    r = await hub.api("DELETE", f"users/alice/tokens/{parent_id}", admin)
    assert r.status_code == 204
    # gone from the hub and from the cache before the delete's response returned
    for child in (notebook, internal, grandchild):
        assert row_of(hub, child["id"]) is None
    if cache.backend == "memory":
        assert cache.stats()["entries"] == entries - 3
    for child in (notebook, internal, grandchild):
        assert not await authenticates(hub, child["token"])
    assert await authenticates(hub, other["token"])


async def test_logging_out_deletes_the_sessions_children_and_theirs(hub: Hub) -> None:
    browser = await hub.login("alice")
    notebook = (await browser.post("api/token-cache/notebook", json={})).json()
    grandchild = (await hub.post("internal", notebook["token"], {"service": "dask"})).json()
    await browser.get("logout")
    for token in (notebook, grandchild):
        assert row_of(hub, token["id"]) is None
    await browser.aclose()


@pytest.mark.hub_config(
    JupyterHub__services=[
        {"name": "follower", "api_token": "follower-secret-token-0123456789abcdef"}
    ],
    JupyterHub__load_roles=[EVENTS_ROLE],
)
async def test_every_end_of_a_token_is_one_event_with_its_reason(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    hub.secrets.add("follower-secret-token-0123456789abcdef")
    async with reading(hub.http, "follower-secret-token-0123456789abcdef") as stream:
        assert stream.status == 200

        async def ends(action) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
            """token id -> reasons, of the token-revoked events ``action`` caused."""
            before = len(stream.events)
            await action()
            await asyncio.sleep(0.2)
            found: dict[str, list[str]] = {}
            for e in stream.events[before:]:
                if e["type"] == "token-revoked":
                    assert len(e["token_ids"]) == 1
                    found.setdefault(e["token_ids"][0], []).append(e["reason"])
            return found

        # deleted, and the cascade to a child (parent-revoked)
        parent = hub.token("alice")
        child = (await hub.post("notebook", parent, {})).json()
        parent_id = orm.APIToken.find(hub.db, parent).api_id
        assert await ends(lambda: hub.api("DELETE", f"users/alice/tokens/{parent_id}", admin)) == {
            parent_id: ["deleted"], child["id"]: ["parent-revoked"]}  # fmt: skip
        # logout
        browser = await hub.login("bob")
        bob_child = (await browser.post("api/token-cache/notebook", json={})).json()
        assert await ends(lambda: browser.get("logout")) == {bob_child["id"]: ["logout"]}
        await browser.aclose()
        # user deleted: their tokens, and a user-changed event
        carol_parent = hub.token("carol")
        carol = (await hub.post("notebook", carol_parent, {})).json()
        carol_parent_id = orm.APIToken.find(hub.db, carol_parent).api_id
        assert await ends(lambda: hub.api("DELETE", "users/carol", admin)) == {
            carol_parent_id: ["user-deleted"], carol["id"]: ["user-deleted"]}  # fmt: skip
        assert any(e["type"] == "user-changed" and e["user"] == "carol" and e["reason"] == "deleted"
                   for e in stream.events)  # fmt: skip
        # server stopped: the server's own token and its notebook token
        hub.add_user("dave")
        spawner = await spawn(hub, admin, "dave")
        hub.secrets.add(spawner.environment["JUPYTERHUB_NOTEBOOK_TOKEN"])
        before = len(stream.events)
        dave = await ends(lambda: stop(hub, admin, "dave"))
        assert len(dave) == 2 and all(r == ["server-stopped"] for r in dave.values()), dave
        assert {e["kind"] for e in stream.events[before:] if e["type"] == "token-revoked"} == {
            "server",
            "notebook",
        }

        # expired: JupyterHub's own purge
        def expire_and_purge():  # type: ignore[no-untyped-def]
            erin_row.expires_at = orm.APIToken.now() - timedelta(seconds=1)
            hub.db.commit()
            orm.APIToken.purge_expired(hub.db)
            return asyncio.sleep(0)

        erin_row = orm.APIToken.find(hub.db, hub.token("erin", expires_in=3600))
        erin_id = erin_row.api_id
        assert await ends(expire_and_purge) == {erin_id: ["expired"]}
        # admin reset with revoke
        frank = (await hub.post("notebook", hub.token("frank"), {})).json()
        reset = lambda: hub.http.delete("api/token-cache/users/frank?revoke=true",  # noqa: E731
                                        headers={"Authorization": f"token {admin}"})  # fmt: skip
        assert await ends(reset) == {frank["id"]: ["admin-reset"]}
        events = list(stream.events)

    assert any(e["type"] == "cache-reset" and e["user"] == "frank" for e in events)
    assert any(e["type"] == "token-minted" and e["token_ids"] == [child["id"]] for e in events)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    text = "\n".join(stream.raw)
    assert not [s for s in hub.secrets if s in text]
    hashes = [row.hashed for row in hub.db.query(orm.APIToken)]
    assert not [h for h in hashes if h.split(":")[-1] in text]


async def test_a_resumed_stream_gets_exactly_what_it_missed(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    parents = [hub.token("alice") for _ in range(100)]
    async with reading(hub.http, admin) as stream:
        first = (await hub.post("notebook", hub.token("alice"), {})).json()
        await stream.wait_for(1)
        last_seen = str(stream.events[-1]["id"])
    children = [(await hub.post("notebook", p, {})).json() for p in parents]
    for child in children:
        await hub.api("DELETE", f"users/alice/tokens/{child['id']}", admin)
    async with reading(hub.http, admin, last_event_id=last_seen) as resumed:
        await resumed.wait_for(200)
        await asyncio.sleep(0.2)
    missed = resumed.events
    assert len(missed) == 200  # 100 mints, 100 revocations, nothing else, nothing twice
    assert [e["token_ids"][0] for e in missed if e["type"] == "token-revoked"] == [
        c["id"] for c in children
    ]
    assert first["id"] not in {e["token_ids"][0] for e in missed}


@pytest.mark.hub_config(TokenCache__event_buffer_size=10)
async def test_a_stream_resuming_beyond_the_buffer_gets_reset(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    async with reading(hub.http, admin) as stream:
        await hub.post("notebook", hub.token("alice"), {})
        await stream.wait_for(1)
        last_seen = str(stream.events[-1]["id"])
    for _ in range(20):
        await hub.post("notebook", hub.token("alice"), {})
    async with reading(hub.http, admin, last_event_id=last_seen) as resumed:
        await resumed.wait_for(1)
        await hub.post("notebook", hub.token("alice"), {})
        await resumed.wait_for(2)
    assert resumed.events[0]["_event"] == "reset" and resumed.events[0]["type"] == "reset"
    assert resumed.events[1]["type"] == "token-minted"
    async with reading(hub.http, admin, last_event_id="not-a-number") as garbage:
        await garbage.wait_for(1)
    assert garbage.events[0]["type"] == "reset"


@pytest.mark.hub_config(TokenCache__event_heartbeat=0.1)
async def test_stream_access_and_heartbeats(hub: Hub) -> None:
    async with reading(hub.http, "") as anonymous:
        pass
    assert anonymous.status == 403
    async with reading(hub.http, hub.token("alice")) as user:
        pass
    assert user.status == 403
    minted = (await hub.post("notebook", hub.token("alice"), {})).json()["token"]
    async with reading(hub.http, minted) as child:
        pass
    assert child.status == 403
    async with reading(hub.http, hub.token("admin", admin=True)) as idle:
        await asyncio.sleep(0.5)
    assert idle.status == 200 and idle.heartbeats >= 3


@pytest.mark.hub_config(TokenCache__event_queue_size=5)
async def test_a_subscriber_that_falls_behind_is_dropped_not_waited_for(hub: Hub) -> None:
    broker = hub.app.authenticator.token_events
    slow = broker.subscribe(None)  # never reads
    for _ in range(20):
        await hub.post("notebook", hub.token("alice"), {})
    assert slow.dropped and slow not in broker._subscribers
    stats = (await hub.api("GET", "token-cache/stats", hub.token("admin", admin=True))).json()[
        "events"
    ]
    assert stats["dropped_subscribers"] == 1 and stats["subscribers"] == 0
    assert stats["published"] >= 20 and stats["buffered"] == stats["published"]


async def test_audit_events_validate_and_reach_the_configured_handler(hub: Hub) -> None:
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    hub.app.eventlog.register_handler(Keep())
    child = (await hub.post("notebook", hub.token("alice"), {})).json()
    await hub.api("DELETE", f"users/alice/tokens/{child['id']}", hub.token("admin", admin=True))
    logged = [json.loads(r.msg) if isinstance(r.msg, str) else r.msg for r in records]
    ours = [e for e in logged if e["__schema__"].endswith("jupyter-token-cache/token-event")]
    assert [e["type"] for e in ours][-2:] == ["token-minted", "token-revoked"]
    assert ours[-1]["reason"] == "deleted" and ours[-1]["token_ids"] == [child["id"]]
