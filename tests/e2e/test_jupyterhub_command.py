"""End to end: the jupyterhub command, configurable-http-proxy and a real single-user server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..hubprocess import HubProcess, running_hub
from .spawning import spawn_and_probe, spawner_config

CONFIG = """
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.TokenCache.services = {"dask": {"scopes": ["read:users!user", "access:servers!user"], "lifetime": 3600}}
"""


@pytest.fixture
def jupyterhub(tmp_path: Path) -> Iterator[HubProcess]:
    """The jupyterhub command with the token cache; afterwards, no token in its log."""
    with running_hub(tmp_path, CONFIG + spawner_config(tmp_path)) as hub:
        yield hub
    text = hub.log()
    for secret in _secrets_seen:
        assert secret not in text, "a token appeared in the hub's log"


_secrets_seen: list[str] = []


@pytest.mark.e2e
def test_spawned_server_gets_tokens_through_the_client(
    jupyterhub: HubProcess, tmp_path: Path
) -> None:
    api = jupyterhub.admin()
    found = spawn_and_probe(api, "alice", tmp_path)
    assert found["env_token_set"] and found["notebook_is_env_token"] and found["notebook_cached"]
    assert "read:users!user=alice" in found["internal_scopes"]
    assert found["internal_reused"] is True
    assert found["wider_scopes_status"] == 403

    # the notebook token reaches the real single-user server through the proxy
    _secrets_seen.append(found["notebook_token"])
    status = httpx.get(
        f"{jupyterhub.url}/user/alice/api/status",
        headers={"Authorization": f"token {found['notebook_token']}"},
    )
    assert status.status_code == 200 and "started" in status.json()
    tokens = {t["id"]: t for t in api.get("users/alice/tokens").json()["api_tokens"]}
    assert found["notebook_id"] in tokens and found["internal_id"] in tokens
    stats = api.get("token-cache/stats").json()
    assert stats["mints"] == 2 and stats["hits"] == 2  # notebook at spawn; then a hit each

    # stopping the server deletes the tokens minted for its session
    assert api.delete("users/alice/server").status_code in (202, 204)
    deadline = time.monotonic() + 60
    while found["notebook_id"] in {
        t["id"] for t in api.get("users/alice/tokens").json()["api_tokens"]
    }:
        assert time.monotonic() < deadline, "minted tokens survived the server"
        time.sleep(0.3)
    assert found["internal_id"] not in {
        t["id"] for t in api.get("users/alice/tokens").json()["api_tokens"]
    }
