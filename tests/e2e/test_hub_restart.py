"""Restarting the hub with the Redis backend: cached tokens are reused, nothing is lost."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import httpx
import pytest

from ..hubprocess import HubProcess
from ..servers import MissingBinary, RedisServer, unavailable
from ..times import timeless

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
def test_tokens_reused_after_hub_restart(
    tmp_path: Path, own_redis: RedisServer, crypt_key: str
) -> None:
    try:
        hub = HubProcess(tmp_path, CONFIG.format(url=own_redis.url, key=crypt_key))
    except MissingBinary as e:
        unavailable(e)

    def ask(parent: str) -> tuple[dict, dict]:  # type: ignore[type-arg]
        with httpx.Client(base_url=f"{hub.hub_url}/hub/api/token-cache/",
                          headers={"Authorization": f"token {parent}"}) as api:  # fmt: skip
            return api.post("notebook", json={}).json(), api.post(
                "internal", json={"service": "dask"}
            ).json()

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
    assert timeless(again_notebook) == timeless({**notebook, "cached": True})
    assert timeless(again_internal) == timeless({**internal, "cached": True})
    assert stats["mints"] == 0 and stats["hits"] == 2


ROTATION_CONFIG = """
import logging
from jupyter_token_cache import with_token_cache
c.EventLogger.handlers = [logging.FileHandler("token-events.log")]  # the audit trail
c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "jupyterhub.tests.mocking.MockSpawner"
c.TokenCache.services = {"dask": {"scopes": ["read:users!user"], "lifetime": 3600}}
"""


def minted_ids(admin: httpx.Client) -> set[str]:
    tokens = admin.get("users/alice/tokens").json()["api_tokens"]
    return {t["id"] for t in tokens if t["note"].startswith("jupyter-token-cache")}


def wait_for(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.e2e
def test_a_new_cookie_secret_keeps_every_lineage(tmp_path: Path) -> None:
    """Rotating the cookie secret (as after a leak) orphans nothing: lineage is in the database."""
    try:
        hub = HubProcess(tmp_path, ROTATION_CONFIG)
    except MissingBinary as e:
        unavailable(e)

    def post(route: str, credential: str, body: dict) -> httpx.Response:  # type: ignore[type-arg]
        return httpx.post(f"{hub.hub_url}/hub/api/token-cache/{route}", json=body,
                          headers={"Authorization": f"token {credential}"})  # fmt: skip

    hub.start()
    try:
        with hub.admin(direct=True) as admin:
            admin.post("users/alice")
            parent = admin.post("users/alice/tokens", json={}).json()["token"]
            admin.post("users/alice/server")
            wait_for(
                lambda: admin.get("users/alice").json()["servers"].get("", {}).get("ready"),
                "the server",
            )
            server_minted = minted_ids(admin)  # the server's notebook token, minted at spawn
            notebook = post("notebook", parent, {}).json()
            internal = post("internal", notebook["token"], {"service": "dask"}).json()
            assert len(server_minted) == 1
    finally:
        hub.stop()

    secret = tmp_path / "cookie_secret"
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    hub.start()
    try:
        assert post("notebook", internal["token"], {}).status_code == 403  # still an internal token
        with hub.admin(direct=True) as admin:
            admin.delete("users/alice/server")
            wait_for(lambda: not admin.get("users/alice").json()["servers"], "the stop")
            wait_for(lambda: not server_minted & minted_ids(admin), "the server's tokens to go")
            assert minted_ids(admin) == {notebook["id"], internal["id"]}
            r = admin.delete("token-cache/users/alice", params={"revoke": "true"})
            assert r.status_code == 200 and r.json()["revoked"] == 2
            assert minted_ids(admin) == set()
    finally:
        hub.stop()
    audit = [json.loads(line) for line in (tmp_path / "token-events.log").read_text().splitlines()]
    ours = [
        e
        for e in audit
        if e["__schema__"] == "https://schema.jupyter.org/jupyter-token-cache/token-event"
    ]
    revoked = {e["token_ids"][0]: e["reason"] for e in ours if e["type"] == "token-revoked"}
    assert revoked[notebook["id"]] == revoked[internal["id"]] == "admin-reset"
    assert {revoked[i] for i in server_minted} == {"server-stopped"}
    text = (tmp_path / "token-events.log").read_text()
    for token in (parent, notebook["token"], internal["token"]):
        assert token not in hub.log() and token not in text
