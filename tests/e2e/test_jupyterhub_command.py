"""End to end: the jupyterhub command, configurable-http-proxy and a real single-user server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..hubprocess import ROOT, HubProcess, running_hub

CONFIG = """
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = [sys.executable, "-m", "tests.e2e.probe"]
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.Spawner.environment = {{"PYTHONPATH": "{root}", "E2E_PROBE_OUT": "{workdir}/probe.json"}}
c.SimpleLocalProcessSpawner.home_dir_template = "{workdir}/home/{{username}}"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.TokenCache.services = {{"dask": {{"scopes": ["read:users!user", "access:servers!user"], "lifetime": 3600}}}}
"""


@pytest.fixture
def jupyterhub(tmp_path: Path) -> Iterator[HubProcess]:
    """The jupyterhub command with the token cache; afterwards, no token in its log."""
    with running_hub(tmp_path, CONFIG.format(root=ROOT, workdir=tmp_path)) as hub:
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
    assert api.post("users/alice").status_code == 201
    assert api.post("users/alice/server").status_code in (201, 202)
    deadline = time.monotonic() + 90
    while not api.get("users/alice").json()["servers"].get("", {}).get("ready"):
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.3)

    found = json.loads((tmp_path / "probe.json").read_text())
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
