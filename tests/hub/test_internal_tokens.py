"""Internal tokens: per (session, service, scopes), within the policy and the caller."""

from __future__ import annotations

import time

from ..times import epoch
from .conftest import Hub


async def test_default_scopes_are_the_policy_within_the_caller(hub: Hub) -> None:
    parent = hub.token("alice")
    r = await hub.post("internal", parent, {"service": "dask"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["service"] == "dask" and body["cached"] is False
    assert "read:users!user=alice" in body["scopes"]
    assert (await hub.post("internal", parent, {"service": "dask"})).json()["token"] == body[
        "token"
    ]
    (row,) = hub.minted_rows("alice")
    assert row.note == "jupyter-token-cache: internal token for dask"


async def test_one_token_per_scope_set_and_service(hub: Hub) -> None:
    parent = hub.token("alice")
    narrow = (
        await hub.post("internal", parent, {"service": "dask", "scopes": ["read:users:name!user"]})
    ).json()
    wide = (await hub.post("internal", parent, {"service": "dask"})).json()
    other = (await hub.post("internal", parent, {"service": "short"})).json()
    assert len({narrow["token"], wide["token"], other["token"]}) == 3
    assert set(narrow["scopes"]) <= {"read:users:name!user=alice", "read:users:groups!user=alice"}
    same = (
        await hub.post("internal", parent, {"service": "dask", "scopes": ["read:users:name!user"]})
    ).json()
    assert same["token"] == narrow["token"] and same["cached"]


async def test_lifetime_capped_by_service_and_parent(hub: Hub) -> None:
    short = (await hub.post("internal", hub.token("alice"), {"service": "short"})).json()
    assert epoch(short["expires_at"]) <= time.time() + 120
    capped = (
        await hub.post("internal", hub.token("alice", expires_in=1000), {"service": "dask"})
    ).json()
    assert epoch(capped["expires_at"]) <= time.time() + 1000
    r = await hub.post(
        "internal", hub.token("alice"), {"service": "short", "minimum_lifetime": 600}
    )
    assert r.status_code == 422


async def test_internal_from_notebook_token_resolves_to_the_original_session(hub: Hub) -> None:
    parent = hub.token("alice", expires_in=5000)
    notebook = (await hub.post("notebook", parent, {})).json()
    # the notebook token, used as a credential, is the same session: same notebook token back
    again = (await hub.post("notebook", notebook["token"], {})).json()
    assert again["token"] == notebook["token"] and again["cached"]
    via_parent = (
        await hub.post("internal", parent, {"service": "dask", "scopes": ["read:users!user"]})
    ).json()
    via_child = (
        await hub.post(
            "internal", notebook["token"], {"service": "dask", "scopes": ["read:users!user"]}
        )
    ).json()
    assert via_child["token"] == via_parent["token"]


# -- escalation attempts ---------------------------------------------------------------


async def test_scopes_outside_the_policy_are_refused_by_name(hub: Hub) -> None:
    r = await hub.post(
        "internal",
        hub.token("alice"),
        {"service": "dask", "scopes": ["admin:users", "read:users!user"]},
    )
    assert r.status_code == 403
    assert r.json() == {
        "status": 403,
        "message": "Scopes not allowed for service 'dask': 'admin:users'",
    }


async def test_scopes_outside_the_caller_are_refused_by_name(hub: Hub) -> None:
    narrow = hub.token("alice", scopes=["read:users:name!user"])
    r = await hub.post("internal", narrow, {"service": "dask", "scopes": ["read:users!user"]})
    assert r.status_code == 403
    assert r.json()["message"] == "Scopes not held by the requesting credential: 'read:users!user'"
    # nothing of the policy held at all
    r = await hub.post(
        "internal", hub.token("alice", scopes=["read:users:name!user"]), {"service": "short"}
    )
    assert r.status_code == 200  # identify scopes are held by every token...
    assert set(r.json()["scopes"]) <= {"read:users:name!user=alice", "read:users:groups!user=alice"}


async def test_another_users_scopes_are_refused(hub: Hub) -> None:
    hub.add_user("bob")
    r = await hub.post(
        "internal", hub.token("alice"), {"service": "dask", "scopes": ["read:users!user=bob"]}
    )
    assert r.status_code == 403 and "read:users!user=bob" in r.json()["message"]
    assert hub.minted_rows("alice") == [] and hub.minted_rows("bob") == []


async def test_unknown_service_is_404(hub: Hub) -> None:
    r = await hub.post("internal", hub.token("alice"), {"service": "nope"})
    assert r.status_code == 404
    assert r.json() == {
        "status": 404,
        "message": "No internal tokens are configured for service 'nope'",
    }


async def test_internal_token_cannot_get_a_notebook_token(hub: Hub) -> None:
    internal = (await hub.post("internal", hub.token("alice"), {"service": "short"})).json()
    r = await hub.post("notebook", internal["token"], {})
    assert r.status_code == 403
    assert r.json()["message"] == "An internal token cannot be used to get a notebook token"


async def test_internal_token_chains_never_widen(hub: Hub) -> None:
    internal = (await hub.post("internal", hub.token("alice"), {"service": "short"})).json()
    r = await hub.post(
        "internal",
        internal["token"],
        {"service": "dask", "scopes": ["access:services!service=dask"]},
    )
    assert r.status_code == 403
    chained = (await hub.post("internal", internal["token"], {"service": "dask"})).json()
    assert set(chained["scopes"]) <= set(internal["scopes"])


async def test_narrow_token_gets_a_narrow_notebook_token(hub: Hub) -> None:
    narrow = hub.token("alice", scopes=["read:users:name!user"])
    body = (await hub.post("notebook", narrow, {})).json()
    assert "access:servers!user=alice" not in body["scopes"]
    assert "read:users!user=alice" not in body["scopes"]


async def test_a_copied_note_grants_nothing(hub: Hub) -> None:
    """A user copies the note of a minted internal token onto a token of their own.

    Lineage lives in the extension's table, keyed by the very row: a note is prose.
    """
    parent = hub.token("alice")
    internal = (await hub.post("internal", parent, {"service": "short"})).json()
    (row,) = hub.minted_rows("alice")
    user = hub.app.users["alice"]
    copied = user.new_api_token(note=row.note, scopes=["read:users!user"])
    r = await hub.post("notebook", copied, {})
    # a plain token of its own: its own scopes, its own session, never the minted token
    assert r.status_code == 200 and "access:servers!user=alice" not in r.json()["scopes"]
    assert internal["token"] not in r.text


async def test_meta_scopes_are_refused(hub: Hub) -> None:
    for scopes in (["inherit"], ["self"], ["admin-ui"], ["read:users"]):
        r = await hub.post("internal", hub.token("alice"), {"service": "dask", "scopes": scopes})
        assert r.status_code in (400, 403), (scopes, r.text)
    assert hub.minted_rows("alice") == []


async def test_user_a_never_receives_user_b_tokens(hub: Hub) -> None:
    """Isolation: whatever A asks for, every token A receives is A's own."""
    alice, bob = hub.token("alice"), hub.token("bob")
    for parent, name in ((alice, "alice"), (bob, "bob"), (alice, "alice")):
        for route, body in (("notebook", {}), ("internal", {"service": "dask"}),
                            ("internal", {"service": "dask", "scopes": ["read:users!user"]})):  # fmt: skip
            token = (await hub.post(route, parent, body)).json()["token"]
            me = await hub.http.get("api/user", headers={"Authorization": f"token {token}"})
            assert me.json()["name"] == name
    assert {row.user.name for row in hub.minted_rows("alice")} == {"alice"}
