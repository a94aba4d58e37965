"""CachedHubAuth against a MockHub: one hub call per new token, evictions from the event stream."""

from __future__ import annotations

import asyncio
import time

import pytest
from jupyterhub import orm

from jupyter_token_cache.services import CachedHubAuth

from .conftest import CHECKER, CHECKER_TOKEN, Hub

pytestmark = pytest.mark.hub_config(
    **CHECKER,
    TokenCache__event_heartbeat=0.5,
)


async def until(predicate, timeout: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not await predicate():
        assert time.monotonic() - start < timeout, "not within the time allowed"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_one_hub_call_per_new_token_however_many_ask(hub: Hub, auth: CachedHubAuth) -> None:
    alice = hub.token("alice", scopes=["read:users!user"])
    model = await auth.user_for_token(alice, sync=False)
    assert model["name"] == "alice" and model["kind"] == "user"
    assert model["scopes"] == (await hub.api("GET", "user", alice)).json()["scopes"]
    assert await auth.user_for_token(alice, sync=False) == model
    assert auth._token_counts["hub_calls"] == 2  # the start-up check and alice
    bob = hub.token("bob")
    models = await asyncio.gather(*(auth.user_for_token(bob, sync=False) for _ in range(1000)))
    assert {m["name"] for m in models} == {"bob"}
    assert auth._token_counts["hub_calls"] == 3
    assert await auth.user_for_token("garbage-" * 4, sync=False) is None
    assert await auth.user_for_token("garbage-" * 4, sync=False) is None
    assert auth._token_counts["hub_calls"] == 4 and auth._token_counts["negative_hits"] == 1


async def test_a_deleted_token_is_refused_within_a_second(hub: Hub, auth: CachedHubAuth) -> None:
    admin = hub.token("admin", admin=True)
    issued = (
        (await hub.api("POST", "users/alice/tokens", admin, json={})).json()
        if hub.add_user("alice")
        else {}
    )
    hub.secrets.add(issued["token"])
    assert await auth.user_for_token(issued["token"], sync=False) is not None
    calls = auth._token_counts["hub_calls"]
    await hub.api("DELETE", f"users/alice/tokens/{issued['id']}", admin)

    async def refused() -> bool:
        return await auth.user_for_token(issued["token"], sync=False) is None

    assert await until(refused) < 1
    assert auth._token_counts["hub_calls"] == calls  # the event says it all: no hub call
    assert auth._token_counts["evictions:deleted"] == 1


async def test_the_synchronous_api_of_hub_auth_works_too(hub: Hub, auth: CachedHubAuth) -> None:
    alice = hub.token("alice")
    loop = asyncio.get_running_loop()
    model = await loop.run_in_executor(None, lambda: auth.user_for_token(alice))
    assert model["name"] == "alice"
    again = await loop.run_in_executor(None, lambda: auth.user_for_token(alice))
    assert again == model and len(auth._token_checkers) == 2  # its own loop, its own checker


async def test_an_answer_is_never_served_past_the_tokens_expiry(
    hub: Hub, auth: CachedHubAuth
) -> None:
    brief = hub.token("alice", expires_in=2)
    assert await auth.user_for_token(brief, sync=False) is not None
    await asyncio.sleep(2.1)
    assert await auth.user_for_token(brief, sync=False) is None  # no event: expiry is not one


async def test_hub_calls_are_bounded_however_many_new_tokens_arrive(hub: Hub) -> None:
    hub.secrets.add(CHECKER_TOKEN)
    CachedHubAuth.clear_instance()
    auth = CachedHubAuth(api_url=f"{hub.url}api", api_token=CHECKER_TOKEN, max_concurrent_checks=3,
                         follow_events=False)  # fmt: skip
    checker = auth.token_checker()
    post, in_flight, most = checker._http.post, 0, 0

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await post(*args, **kwargs)
        finally:
            in_flight -= 1

    checker._http.post = counting  # type: ignore[method-assign]
    answers = await asyncio.gather(
        *(auth.user_for_token(f"garbage-{i:04d}" * 4, sync=False) for i in range(60))
    )
    assert answers == [None] * 60
    assert auth._token_counts["hub_calls"] == 60 and most == 3
    await checker.close()


async def test_a_missing_scope_is_named_at_start_up(hub: Hub) -> None:
    role = orm.Role(name="introspect-only", scopes=["custom:token-cache:introspect"])
    hub.db.add(role)
    hub.db.commit()
    user = hub.add_user("checker-user", roles_=["introspect-only"])
    introspect_only = user.new_api_token(scopes=["custom:token-cache:introspect"])
    admin = hub.token("admin", admin=True)  # an admin, but without the custom scopes
    hub.secrets.add(introspect_only)
    for token, missing in ((admin, "custom:token-cache:introspect"),
                           (introspect_only, "custom:token-cache:events")):  # fmt: skip
        CachedHubAuth.clear_instance()
        auth = CachedHubAuth(api_url=f"{hub.url}api", api_token=token)
        with pytest.raises(RuntimeError, match=missing):
            await auth.start()
        auth.close_token_checks()


async def test_metrics(hub: Hub, auth: CachedHubAuth) -> None:
    from prometheus_client import generate_latest

    await auth.user_for_token(hub.token("alice"), sync=False)
    text = generate_latest().decode()
    for name in ("checks_total{result=\"misses\"}", "hub_calls_total", "stream_connected 1.0",
                 "events_lag_seconds", "evictions_total"):  # fmt: skip
        assert f"jupyter_token_cache_service_{name}" in text, name
