"""Every change of what a token may do reaches the event stream, and services act on it at once.

JupyterHub computes a token's powers from its owner's roles, groups, groups' roles and
the servers shared with them (or their groups), with scope filters naming users, groups
and servers. Each change below is one event; a service caching answers refuses the
powers it lost without waiting for ``cache_ttl``. A token row deleted where the hub's
database session cannot see it (raw SQL) is found by the next sweep of the tokens the
hub described to services.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from jupyterhub import orm, roles
from sqlalchemy import text

from jupyter_token_cache.services import CachedHubAuth
from jupyter_token_cache.tokens.stream import read_blocks, sse

from .conftest import CHECKER, Hub

pytestmark = pytest.mark.hub_config(
    **CHECKER,
    TokenCache__event_heartbeat=0.5,
    TokenCache__sweep_interval=0.5,
)

Seen = tuple[str, str | None, str | None]


def changes_after(hub: Hub, position: int) -> list[Seen]:
    """(type, name, reason) of each change event after ``position``."""
    found = []
    for event in hub.app.authenticator.token_events._history:
        if event.id > position and event.type.endswith("-changed"):
            name = event.user or event.group or event.service
            found.append((event.type, name, event.reason))
    return found


class Changes:
    """What each step adds to the stream."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.position = hub.app.authenticator.token_events.position()

    def __call__(self) -> list[Seen]:
        new = changes_after(self.hub, self.position)
        self.position = self.hub.app.authenticator.token_events.position()
        return new


def spawner_of(hub: Hub, name: str) -> Any:
    user = hub.app.users[name]
    user.spawner  # noqa: B018 - the default server's row
    hub.db.commit()
    return user.spawner.orm_spawner


async def test_every_change_of_what_a_token_may_do_is_an_event(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    for name in ("alice", "bob", "carol"):
        hub.add_user(name)
    spawner_of(hub, "alice")
    changes = Changes(hub)

    async def api(method: str, path: str, status: int, **kwargs: Any) -> None:
        r = await hub.api(method, path, admin, **kwargs)
        assert r.status_code == status, r.text

    await api("PATCH", "users/bob", 200, json={"admin": True})
    assert changes() == [("user-changed", "bob", "roles")]
    await api("POST", "groups/physics", 201)
    await api("POST", "groups/physics/users", 200, json={"users": ["carol"]})
    assert changes() == [("user-changed", "carol", "groups")]
    # shares: with a user, with a group, narrowed, revoked one by one and all at once
    await api("POST", "shares/alice/", 200, json={"user": "bob"})
    assert changes() == [("user-changed", "bob", "shares")]
    await api("POST", "shares/alice/", 200, json={"group": "physics"})
    assert changes() == [("group-changed", "physics", "shares")]
    await api(
        "PATCH",
        "shares/alice/",
        200,
        json={"user": "bob", "scopes": ["read:servers!server=alice/"]},
    )
    assert changes() == []  # bob never held read:servers: nothing changed
    await api("DELETE", "users/bob/shared/alice/", 204)
    assert changes() == [("user-changed", "bob", "shares")]
    await api("POST", "shares/alice/", 200, json={"user": "bob"})
    changes()
    await api("DELETE", "shares/alice/", 204)  # a bulk DELETE of every share of the server
    assert sorted(changes()) == [("group-changed", "physics", "shares"),
                                 ("user-changed", "bob", "shares")]  # fmt: skip
    # a share code accepted is a share
    code = await hub.api("POST", "share-codes/alice/", admin)
    assert code.status_code == 200, code.text
    share_code = orm.ShareCode.find(hub.db, code.json()["code"])
    share_code.exchange(hub.app.users["carol"].orm_user)
    assert changes() == [("user-changed", "carol", "shares")]
    # roles: of a group, of a service, a role's own scopes, a role deleted
    role = orm.Role(name="readers", scopes=["read:users:name"])
    hub.db.add(role)
    roles.grant_role(hub.db, orm.Group.find(hub.db, "physics"), role)
    hub.db.commit()
    assert changes() == [("group-changed", "physics", "roles")]
    roles.grant_role(hub.db, orm.Service.find(hub.db, "checker"), role)
    hub.db.commit()
    assert changes() == [("service-changed", "checker", "roles")]
    role.scopes = ["read:users:name", "read:users:groups"]
    hub.db.commit()
    assert changes() == [("scopes-changed", None, "scopes")]
    hub.db.delete(role)
    hub.db.commit()
    assert changes() == [("scopes-changed", None, "scopes")]
    # renames: scope filters (!user=, !server=, !group=) follow names
    await api("PATCH", "users/carol", 200, json={"name": "caroline"})
    assert changes() == [
        ("user-changed", "caroline", "renamed"),
        ("scopes-changed", None, "renamed"),
    ]
    group = orm.Group.find(hub.db, "physics")
    group.name = "astro"
    hub.db.commit()
    assert changes() == [("group-changed", "astro", "renamed"), ("scopes-changed", None, "renamed")]
    await api("DELETE", "groups/astro", 204)
    assert changes() == [("group-changed", "astro", "deleted")]
    # a server deleted takes its shares with it
    await api("POST", "shares/alice/", 200, json={"user": "bob"})
    changes()
    spawner = hub.app.users["alice"].spawner.orm_spawner
    hub.db.delete(spawner)
    hub.db.commit()
    assert sorted(changes()) == [("user-changed", "bob", "shares"),
                                 ("user-changed", "caroline", "shares")]  # fmt: skip


async def within(seconds: float, predicate: Any) -> float:
    start = time.monotonic()
    while not await predicate():
        assert time.monotonic() - start < seconds, f"not within {seconds} s"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_a_revoked_share_is_refused_by_a_service_at_once(
    hub: Hub, auth: CachedHubAuth
) -> None:
    admin = hub.token("admin", admin=True)
    hub.add_user("alice")
    spawner_of(hub, "alice")
    bob = hub.token("bob")  # the default: whatever bob holds, shares included
    shared = "access:servers!server=alice/"
    assert shared not in (await auth.user_for_token(bob, sync=False))["scopes"]
    assert (await hub.api("POST", "shares/alice/", admin, json={"user": "bob"})).status_code == 200

    async def granted() -> bool:
        return shared in (await auth.user_for_token(bob, sync=False))["scopes"]

    assert await within(1, granted) < 1  # gaining a power is seen at once too
    assert (await hub.api("DELETE", "users/bob/shared/alice/", admin)).status_code == 204

    async def refused() -> bool:
        return not await granted()

    assert await within(1, refused) < 1
    # granted again, then every share of the server deleted at once (a bulk DELETE)
    assert (await hub.api("POST", "shares/alice/", admin, json={"user": "bob"})).status_code == 200
    assert await within(1, granted) < 1
    assert (await hub.api("DELETE", "shares/alice/", admin)).status_code == 204
    assert await within(1, refused) < 1


async def test_a_late_event_for_a_reused_id_does_not_condemn_the_new_token(
    hub: Hub, auth: CachedHubAuth
) -> None:
    """SQLite gives a deleted row's id to the next row: carol's token id becomes bob's.

    The event for carol's token reaches the service late, after it has checked bob's
    token: bob's answer is younger than the event, so the event says nothing about it.
    """
    admin = hub.token("admin", admin=True)
    carol = hub.token("carol", scopes=["read:users!user"])
    carol_row = orm.APIToken.find(hub.db, carol)
    carol_id = carol_row.api_id
    assert await auth.user_for_token(carol, sync=False) is not None
    follower = auth._follower
    assert follower is not None
    follower.close()  # the follower falls behind: nothing reaches it for now
    broker = hub.app.authenticator.token_events
    before = broker.last_id
    assert (await hub.api("DELETE", f"users/carol/tokens/{carol_id}", admin)).status_code == 204
    late = [e for e in broker._history if e.id > before and e.type == "token-revoked"]
    assert [e.token_ids for e in late] == [(carol_id,)]
    bob = hub.token("bob", scopes=["read:users!user"])
    if hub.app.db.bind.dialect.name == "sqlite":
        assert orm.APIToken.find(hub.db, bob).api_id == carol_id  # the id was reused
    auth.revocations.cut()  # as the follower itself does when its stream ends
    auth.revocations.caught_up()  # ... and live again, without the event yet
    bob_answer = await auth.user_for_token(bob, sync=False)
    assert bob_answer is not None and bob_answer["name"] == "bob"
    calls = auth._token_counts["hub_calls"]
    # now the late event arrives, as the follower reads it from the stream
    for block in read_blocks(iter(sse(late[0]).splitlines())):
        follower._take(block)
    await asyncio.sleep(0.05)  # the eviction runs on the checker's loop
    assert await auth.user_for_token(bob, sync=False) == bob_answer
    assert auth._token_counts["hub_calls"] == calls  # no false refusal, not even a re-check
    assert await auth.user_for_token(carol, sync=False) is None


async def test_a_token_deleted_by_raw_sql_is_refused_after_the_next_sweep(
    hub: Hub, auth: CachedHubAuth
) -> None:
    alice = hub.token("alice")
    assert await auth.user_for_token(alice, sync=False) is not None
    row_id = orm.APIToken.find(hub.db, alice).id
    hub.db.execute(text("DELETE FROM api_tokens WHERE id = :id"), {"id": row_id})
    hub.db.commit()  # no flush saw it: no observer event

    async def refused() -> bool:
        return await auth.user_for_token(alice, sync=False) is None

    assert await within(2, refused) < 2  # a sweep every 0.5 s
    watch = hub.app.authenticator.token_watch
    assert watch.counts["vanished"] == 1
    assert auth._token_counts["evictions:deleted"] == 1


async def test_a_full_watch_list_makes_every_cache_ask_again(hub: Hub, auth: CachedHubAuth) -> None:
    watch = hub.app.authenticator.token_watch
    watch.size = 2
    tokens = [hub.token(name) for name in ("alice", "bob", "carol")]
    for token in tokens:
        assert await auth.user_for_token(token, sync=False) is not None
    assert watch.counts["let_go"] == 1
    floor = auth.revocations.floor
    calls = auth._token_counts["hub_calls"]

    async def raised() -> bool:
        return (auth.revocations.floor or 0) > (floor or 0)

    assert await within(2, raised) < 2  # one scopes-changed event ("unwatched")
    for token in tokens:
        assert await auth.user_for_token(token, sync=False) is not None
    assert auth._token_counts["hub_calls"] == calls + 3  # each asked again, once


async def test_a_token_deleted_through_the_api_is_told_once_never_again_for_its_id(
    hub: Hub, auth: CachedHubAuth
) -> None:
    """The sweep of described tokens must not report again, by id, a row whose end the
    observer already told: SQLite gives the id to the next token, whose fresh answer such
    an event would end (a valid token refused). Found by the revocation benchmark."""
    admin = hub.token("admin", admin=True)
    carol = hub.token("carol", scopes=["read:users!user"])
    carol_id = orm.APIToken.find(hub.db, carol).api_id
    assert await auth.user_for_token(carol, sync=False) is not None  # described: watched
    assert (await hub.api("DELETE", f"users/carol/tokens/{carol_id}", admin)).status_code == 204
    bob = hub.token("bob", scopes=["read:users!user"])
    if hub.app.db.bind.dialect.name == "sqlite":
        assert orm.APIToken.find(hub.db, bob).api_id == carol_id
    assert await auth.user_for_token(bob, sync=False) is not None
    await asyncio.sleep(1.5)  # three sweeps
    assert await auth.user_for_token(bob, sync=False) is not None
    assert hub.app.authenticator.token_watch.counts["vanished"] == 0
    assert await auth.user_for_token(carol, sync=False) is None
