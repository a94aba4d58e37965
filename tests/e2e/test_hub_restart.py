"""Restarting the hub with the Redis backend: cached tokens are reused, nothing is lost."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ..hubprocess import HubProcess
from ..servers import MissingBinary, RedisServer, unavailable

CONFIG = """
from jupyter_token_cache import with_token_cache
c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.TokenCache.backend = "redis"
c.TokenCache.url = "{url}"
c.TokenCache.encryption_key = "{key}"
c.TokenCache.services = {{"dask": {{"scopes": ["read:users!user"], "lifetime": 3600}}}}
"""


@pytest.mark.e2e
def test_tokens_reused_after_hub_restart(tmp_path: Path, own_redis: RedisServer, crypt_key: str) -> None:
    try:
        hub = HubProcess(tmp_path, CONFIG.format(url=own_redis.url, key=crypt_key))
    except MissingBinary as e:
        unavailable(e)

    def ask(parent: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
        with httpx.Client(base_url=f"{hub.hub_url}/hub/api/token-cache/",
                          headers={"Authorization": f"token {parent}"}) as api:  # fmt: skip
            return api.post("notebook", json={}).json(), api.post("internal", json={"service": "dask"}).json()

    hub.start()
    try:
        with hub.admin(direct=True) as admin:
            admin.post("users/alice")
            parent = admin.post("users/alice/tokens", json={}).json()["token"]
        notebook, internal = ask(parent)
        assert not notebook["cached"] and not internal["cached"]
    finally:
        hub.stop()

    hub.start()  # same database, cookie secret and Redis
    try:
        again_notebook, again_internal = ask(parent)
        with hub.admin(direct=True) as admin:
            stats = admin.get("token-cache/stats").json()
    finally:
        hub.stop()
    assert again_notebook == {**notebook, "cached": True}
    assert again_internal == {**internal, "cached": True}
    assert stats["mints"] == 0 and stats["hits"] == 2
