"""CachedHubAuth against a MockHub: one hub call per new token, evictions from the event stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from jupyter_token_cache.services import CachedHubAuth

from .conftest import Hub

SERVICE = "checker-secret-token-0123456789abcdef"
ROLES = [{"name": "checker", "scopes": ["custom:token-cache:introspect", "custom:token-cache:events"],
          "services": ["checker"]}]  # fmt: skip
pytestmark = pytest.mark.hub_config(
    JupyterHub__services=[{"name": "checker", "api_token": SERVICE}],
    JupyterHub__load_roles=ROLES,
    TokenCache__event_heartbeat=0.5,
)


@pytest.fixture
async def auth(hub: Hub) -> AsyncIterator[CachedHubAuth]:
    hub.secrets.add(SERVICE)
    CachedHubAuth.clear_instance()
    auth = CachedHubAuth(api_url=f"{hub.url}api", api_token=SERVICE, stream_timeout=2)
    await auth.start()
    yield auth
    auth.close_token_checks()
    for checker in auth._token_checkers.values():
        await checker.close()


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
    assert auth._token_counts["hub_calls"] == calls + 1  # evicted, asked again, inactive
    assert auth._token_counts["evictions:deleted"] == 1


async def test_the_synchronous_api_of_hub_auth_works_too(hub: Hub, auth: CachedHubAuth) -> None:
    alice = hub.token("alice")
    loop = asyncio.get_running_loop()
    model = await loop.run_in_executor(None, lambda: auth.user_for_token(alice))
    assert model["name"] == "alice"
    again = await loop.run_in_executor(None, lambda: auth.user_for_token(alice))
    assert again == model and len(auth._token_checkers) == 2  # its own loop, its own checker
