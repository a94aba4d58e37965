"""End to end: the jupyterhub command, configurable-http-proxy and a real single-user server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICE_TOKEN = "e2e-" + os.urandom(16).hex()

CONFIG = """
import os
import sys
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{tmp}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
c.JupyterHub.pid_file = "{tmp}/jupyterhub.pid"
c.ConfigurableHTTPProxy.pid_file = "{tmp}/proxy.pid"
c.JupyterHub.services = [{{"name": "e2e", "api_token": "{service_token}"}}]
c.JupyterHub.load_roles = [
    {{"name": "e2e", "scopes": ["admin:users", "admin:servers", "tokens", "custom:token-cache:admin"], "services": ["e2e"]}},
]
c.JupyterHub.custom_scopes = {{"custom:token-cache:admin": {{"description": "Administer the token cache"}}}}
c.Spawner.cmd = [sys.executable, "-m", "tests.e2e.probe"]
c.Spawner.environment = {{"PYTHONPATH": "{root}", "E2E_PROBE_OUT": "{tmp}/probe.json"}}
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/home/{{username}}"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.TokenCache.services = {{"dask": {{"scopes": ["read:users!user", "access:servers!user"], "lifetime": 3600}}}}
"""


def require_proxy() -> None:
    if shutil.which("configurable-http-proxy") is None:
        message = "configurable-http-proxy not found (npm install -g configurable-http-proxy)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message} - required in CI", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def jupyterhub(tmp_path: Path) -> Iterator[str]:
    """Run ``jupyterhub -f config``; yield its public URL; stop it (and its proxy and servers)."""
    require_proxy()
    port = free_port()
    (tmp_path / "jupyterhub_config.py").write_text(CONFIG.format(
        port=port, hub_port=free_port(), proxy_api_port=free_port(), tmp=tmp_path, root=ROOT,
        service_token=SERVICE_TOKEN))  # fmt: skip
    log = (tmp_path / "jupyterhub.log").open("w")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    hub = subprocess.Popen(
        [str(Path(sys.executable).with_name("jupyterhub")), "-f", "jupyterhub_config.py"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if hub.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("jupyterhub did not start:\n" + (tmp_path / "jupyterhub.log").read_text()[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()
        log.close()
        text = (tmp_path / "jupyterhub.log").read_text()
        for secret in _secrets_seen:
            assert secret not in text, "a token appeared in the hub's log"


_secrets_seen: list[str] = []


@pytest.mark.e2e
def test_spawned_server_gets_tokens_through_the_client(jupyterhub: str, tmp_path: Path) -> None:
    api = httpx.Client(base_url=f"{jupyterhub}/hub/api/", headers={"Authorization": f"token {SERVICE_TOKEN}"},
                       timeout=30)  # fmt: skip
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
    status = httpx.get(f"{jupyterhub}/user/alice/api/status", headers={"Authorization": f"token {found['notebook_token']}"})
    assert status.status_code == 200 and "started" in status.json()
    tokens = {t["id"]: t for t in api.get("users/alice/tokens").json()["api_tokens"]}
    assert found["notebook_id"] in tokens and found["internal_id"] in tokens
    stats = api.get("token-cache/stats").json()
    assert stats["mints"] == 2 and stats["hits"] == 2  # notebook at spawn; then a hit each

    # stopping the server deletes the tokens minted for its session
    assert api.delete("users/alice/server").status_code in (202, 204)
    deadline = time.monotonic() + 60
    while found["notebook_id"] in {t["id"] for t in api.get("users/alice/tokens").json()["api_tokens"]}:
        assert time.monotonic() < deadline, "minted tokens survived the server"
        time.sleep(0.3)
    assert found["internal_id"] not in {t["id"] for t in api.get("users/alice/tokens").json()["api_tokens"]}
