"""Notebook tokens: one per parent session, reused while fresh, never past the parent."""

from __future__ import annotations

import asyncio
import time

import pytest

from ..times import epoch
from .conftest import Hub
from .conftest import any_backend_config as hub_config  # noqa: F401 - every test on every backend


async def test_same_session_same_token_other_session_other_token(hub: Hub) -> None:
    alice = hub.token("alice")
    first = (await hub.post("notebook", alice, {})).json()
    again = (await hub.post("notebook", alice, {})).json()
    assert first["cached"] is False and again["cached"] is True
    assert again["token"] == first["token"] and again["id"] == first["id"]

    other_session = (await hub.post("notebook", hub.token("alice"), {})).json()
    bob = (await hub.post("notebook", hub.token("bob"), {})).json()
    assert len({first["token"], other_session["token"], bob["token"]}) == 3
    assert all(s.endswith("!user=alice") for s in first["scopes"])
    assert all(s.endswith("!user=bob") for s in bob["scopes"])


async def test_token_is_a_real_hub_token_with_explicit_scopes_and_note(hub: Hub) -> None:
    body = (await hub.post("notebook", hub.token("alice"), {})).json()
    me = await hub.http.get("api/user", headers={"Authorization": f"token {body['token']}"})
    assert me.status_code == 200 and me.json()["name"] == "alice"
    (row,) = hub.minted_rows("alice")
    assert row.api_id == body["id"]
    assert sorted(row.scopes) == body["scopes"]
    assert row.note == "jupyter-token-cache: notebook token"
    assert body["token"] not in row.note


async def test_expiry_never_beyond_the_parent(hub: Hub) -> None:
    parent = hub.token("alice", expires_in=1000)
    body = (await hub.post("notebook", parent, {})).json()
    (parent_row,) = [r for r in hub.token_rows("alice") if r.note == "test token"]
    parent_expiry = parent_row.expires_at.timestamp() if parent_row.expires_at.tzinfo else \
        parent_row.expires_at.replace(tzinfo=__import__("datetime").timezone.utc).timestamp()  # fmt: skip
    assert epoch(body["expires_at"]) <= parent_expiry + 1e-6
    assert epoch(body["expires_at"]) > time.time() + 900


async def test_parent_too_short_lived_is_422(hub: Hub) -> None:
    r = await hub.post("notebook", hub.token("alice", expires_in=100), {})
    assert r.status_code == 422 and r.json()["status"] == 422
    assert "less than the 300 s required" in r.json()["message"]
    r = await hub.post("notebook", hub.token("alice"), {"minimum_lifetime": 10 * 86400})
    assert r.status_code == 422
    assert hub.minted_rows("alice") == []


async def test_below_requested_minimum_mints_anew(hub: Hub) -> None:
    parent = hub.token("alice")
    first = (await hub.post("notebook", parent, {})).json()
    reused = (await hub.post("notebook", parent, {"minimum_lifetime": 3600})).json()
    assert reused["token"] == first["token"] and reused["cached"]
    await asyncio.sleep(2.1)  # a fresh token now outlives the first by 2 s
    remaining = epoch(first["expires_at"]) - time.time()
    fresh = (await hub.post("notebook", parent, {"minimum_lifetime": int(remaining) + 1})).json()
    assert fresh["cached"] is False and fresh["token"] != first["token"]


@pytest.mark.hub_config(TokenCache__notebook_lifetime=4, TokenCache__minimum_lifetime=1)
async def test_past_half_life_mints_anew(hub: Hub) -> None:
    parent = hub.token("alice")
    first = (await hub.post("notebook", parent, {})).json()
    assert (await hub.post("notebook", parent, {})).json()["token"] == first["token"]
    await asyncio.sleep(epoch(first["expires_at"]) - time.time() - 1.5)  # under half of ~4 s left
    later = (await hub.post("notebook", parent, {})).json()
    assert later["cached"] is False and later["token"] != first["token"]


@pytest.mark.hub_config(TokenCache__operation_timeout=5.0)
async def test_hundred_concurrent_requests_mint_once(hub: Hub) -> None:
    """One mint for a stampede (single flight, and a lease on shared backends).

    The backend gets 5 s per call here: a hundred requests' synchronous database work
    (PostgreSQL, on a loaded CI box) once blocked the loop for 1.3 s, a Redis call timed
    out after the default 0.5 s, and the cache failed open, as designed, into a second
    mint. Failing open is tested on its own (test_backend_outage, test_faults).
    """
    parent = hub.token("alice")
    answers = await asyncio.gather(*(hub.post("notebook", parent, {}) for _ in range(100)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.json()["token"] for r in answers}) == 1
    assert sum(not r.json()["cached"] for r in answers) == 1
    assert len(hub.minted_rows("alice")) == 1


async def test_token_deleted_in_the_hub_is_never_served_again(hub: Hub) -> None:
    parent = hub.token("alice")
    first = (await hub.post("notebook", parent, {})).json()
    r = await hub.api("DELETE", f"users/alice/tokens/{first['id']}", parent)
    assert r.status_code == 204
    after = (await hub.post("notebook", parent, {})).json()
    assert after["cached"] is False and after["token"] != first["token"]
    assert hub.app.authenticator.token_service.stats()["evictions"] == 1


async def test_deleted_user_tokens_never_served(hub: Hub) -> None:
    admin = hub.token("admin", admin=True)
    first = (await hub.post("notebook", hub.token("alice"), {})).json()
    assert (await hub.api("DELETE", "users/alice", admin)).status_code == 204
    r = await hub.post("notebook", hub.token("alice"), {})
    assert r.status_code == 200 and r.json()["token"] != first["token"]


async def test_login_session_children_die_with_logout(hub: Hub) -> None:
    browser = await hub.login("alice")
    r = await browser.post("api/token-cache/notebook", json={})
    assert r.status_code == 200, r.text
    first = r.json()
    again = (await browser.post("api/token-cache/notebook", json={})).json()
    assert again["token"] == first["token"] and again["cached"]

    other = await hub.login("alice")  # another login session: another token
    assert (await other.post("api/token-cache/notebook", json={})).json()["token"] != first["token"]

    no_xsrf = await browser.post("api/token-cache/notebook", json={}, headers={"X-XSRFToken": ""})
    assert no_xsrf.status_code == 403

    ids = {row.api_id for row in hub.minted_rows("alice")}
    assert first["id"] in ids
    await browser.get("logout")
    assert first["id"] not in {row.api_id for row in hub.minted_rows("alice")}
    assert len(hub.minted_rows("alice")) == 1  # the other session's token stays
    await browser.aclose()
    await other.aclose()


async def test_cookie_session_expiry_caps_children(hub: Hub) -> None:
    browser = await hub.login("alice")
    body = (await browser.post("api/token-cache/notebook", json={})).json()
    max_age = hub.app.tornado_settings["cookie_max_age_days"] * 86400
    assert epoch(body["expires_at"]) <= time.time() + max_age
    await browser.aclose()
