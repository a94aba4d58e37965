"""The cache is never an authority: Redis down means minting, and caching resumes by itself."""

from __future__ import annotations

import asyncio

import pytest
from traitlets.config import Config

from ..servers import RedisServer
from .conftest import Hub


@pytest.fixture
def hub_config(hub_config: Config, own_redis: RedisServer, crypt_key: str) -> Config:
    hub_config.TokenCache.backend = "redis"
    hub_config.TokenCache.url = own_redis.url
    hub_config.TokenCache.encryption_key = crypt_key
    hub_config.TokenCache.operation_timeout = 0.2
    hub_config.TokenCache.retry_interval = 0.2
    return hub_config


async def test_redis_stopped_mid_run(hub: Hub, own_redis: RedisServer) -> None:
    parent = hub.token("alice")
    # caching works before the kill (on a loaded machine a first operation may outlast the
    # 0.2 s timeout, and the store then waits retry_interval before it tries again)
    for _ in range(50):
        first = (await hub.post("notebook", parent, {})).json()
        if first["cached"]:
            break
        await asyncio.sleep(0.1)
    assert first["cached"] is True, "caching did not start"

    own_redis.kill()  # SIGKILL, mid-run
    store = hub.app.authenticator.token_cache.store
    # until the subscription notices (milliseconds), local copies may still answer
    noticing = []
    while store.notified:
        noticing.append(await hub.post("notebook", parent, {}))
    during = [await hub.post("notebook", parent, {}) for _ in range(5)]
    assert {r.status_code for r in noticing + during} == {200}
    assert {r.json()["cached"] for r in during} == {False}
    stats = hub.app.authenticator.token_service.stats()
    assert stats["errors"] >= 1 and stats["available"] is False
    health = stats["health"]
    assert health["available"] is False and health["last_error"]
    assert health["since"] <= health["last_error_at"]  # ISO 8601 text sorts as time

    own_redis.restart()
    for _ in range(50):  # the store retries after retry_interval
        await asyncio.sleep(0.1)
        r = (await hub.post("notebook", parent, {})).json()
        if r["cached"]:
            break
    assert r["cached"] is True, "caching did not resume"
    assert r["token"] != first["token"]  # the restarted server is empty: a fresh mint was cached
    assert (await hub.post("notebook", parent, {})).json()["token"] == r["token"]
    health = hub.app.authenticator.token_service.stats()["health"]
    assert health["available"] is True and health["since"] > stats["health"]["since"]
    assert health["last_error"] is not None  # the last failure stays visible after recovery
