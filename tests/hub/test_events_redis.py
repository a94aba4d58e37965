"""Lifecycle events on the Redis backend's channel."""

from __future__ import annotations

import pytest
import redis.asyncio
from traitlets.config import Config

from jupyter_token_cache.cache.codec import Codec, parse_keys

from ..conftest import settings_for
from ..servers import RedisServer
from .conftest import Hub


@pytest.fixture
def hub_config(hub_config: Config, request: pytest.FixtureRequest, crypt_key: str) -> Config:
    for name, value in settings_for("redis", request, crypt_key).items():
        setattr(hub_config.TokenCache, name, value)
    return hub_config


async def test_events_also_go_sealed_to_the_redis_channel(
    hub: Hub, redis_server: RedisServer, crypt_key: str
) -> None:
    """Every process sharing the Redis backend hears the hub's events (sealed, like entries)."""
    cache = hub.app.authenticator.token_cache
    client = redis.asyncio.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    await pubsub.subscribe(f"{cache.namespace}:events")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    child = (await hub.post("notebook", hub.token("alice"), {})).json()
    await hub.api("DELETE", f"users/alice/tokens/{child['id']}", hub.token("admin", admin=True))
    codec = Codec(parse_keys(crypt_key))
    received, opened = [], []
    for _ in range(100):  # until the revocation is heard (the hub forwards it after the DELETE)
        message = await pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            received.append(message["data"])
            opened.append(codec.open(message["data"]))
            if opened[-1]["type"] == "token-revoked":
                break
    await pubsub.aclose()
    await client.aclose()
    assert all(b"alice" not in data and child["token"].encode() not in data for data in received)
    assert [(e["type"], e["token_ids"]) for e in opened if "token_ids" in e] == [
        ("token-minted", [child["id"]]),
        ("token-revoked", [child["id"]]),
    ]
