"""docs/complete-config.md, end to end: the real ``jupyterhub`` command with the page's
``jupyterhub_config.py`` (as the page composes it), configurable-http-proxy, Redis and the
example service, and every part of the file used once.

What the page names on the operator's machine is replaced as in tests/docs: Redis on
6379 by this test's, /path/to/ by this repository, the service's port by a free one.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..cli.cli import cli
from ..docs.pages import ROOT, for_this_jupyterhub, page_config
from ..hubprocess import HubProcess, running_hub
from ..servers import RedisServer, free_port
from .services import api_token

pytestmark = pytest.mark.e2e

PAGE = ROOT / "docs" / "complete-config.md"


@pytest.fixture(scope="module")
def admin_token() -> str:
    return secrets.token_hex(16)


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, admin_token: str
) -> Iterator[HubProcess]:
    def substitute(source: str) -> str:
        return (
            source.replace("redis://127.0.0.1:6379", f"redis://127.0.0.1:{redis_server.port}")
            .replace("/path/to/", f"{ROOT}/")
            .replace("127.0.0.1:10101", f"127.0.0.1:{free_port()}")
        )

    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTERHUB_CRYPT_KEY", secrets.token_hex(32))
        env.setenv("TOKEN_CACHE_ADMIN_TOKEN", admin_token)
        workdir = tmp_path_factory.mktemp("complete-config")
        config = for_this_jupyterhub(page_config(PAGE, substitute))
        with running_hub(workdir, config) as hub:
            yield hub


def test_check_config_finds_no_problem(hub: HubProcess) -> None:
    result = cli(
        "check-config",
        str(hub.workdir / "jupyterhub_config.py"),
        env={
            "JUPYTERHUB_CRYPT_KEY": os.environ.get("JUPYTERHUB_CRYPT_KEY", ""),
            "TOKEN_CACHE_ADMIN_TOKEN": "x",
        },
    )
    assert "no problems found" in result.stdout, result.stdout + result.stderr


def test_every_part_of_the_file_works(hub: HubProcess, admin_token: str) -> None:
    log = hub.log()
    assert "TokenCacheGitHubOAuthenticator" in log
    assert "Token cache on the redis backend" in log
    warned = [line for line in log.splitlines() if line.startswith("[W") and "TokenCache." in line]
    assert not warned, warned  # no scope users cannot hold, no lifetime under the minimum

    # notebook and internal tokens, within what users hold (extra_user_scopes)
    alice = api_token(hub, "alice")["token"]
    ask = {"Authorization": f"token {alice}"}
    api = f"{hub.url}/hub/api/token-cache"
    notebook = httpx.post(f"{api}/notebook", json={}, headers=ask, timeout=30)
    assert notebook.status_code == 200, notebook.text
    assert "access:services!service=whoami" in notebook.json()["scopes"]
    dask = httpx.post(f"{api}/internal", json={"service": "dask"}, headers=ask, timeout=30)
    assert dask.status_code == 200, dask.text
    whoami = httpx.post(f"{api}/internal", json={"service": "whoami"}, headers=ask, timeout=30)
    assert whoami.status_code == 200, whoami.text

    # the whoami service, through the proxy, checks it with CachedHubAuth
    token = whoami.json()["token"]
    for _ in range(100):  # the managed service may still be starting
        answer = httpx.get(
            f"{hub.url}/services/whoami/", headers={"Authorization": f"token {token}"}, timeout=30
        )
        if answer.status_code != 503 and answer.status_code != 404:
            break
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "alice"

    # the jupyter-token-cache command with its own token
    stats = cli("stats", "--json", "--url", hub.url, env={"JUPYTERHUB_API_TOKEN": admin_token})
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["backend"] == "redis"

    # the operator who is not an admin: the admin routes
    ops = api_token(hub, "ops")["token"]
    r = httpx.get(f"{api}/stats", headers={"Authorization": f"token {ops}"}, timeout=30)
    assert r.status_code == 200, r.text

    # the audit trail
    audit = (hub.workdir / "token-events.log").read_text().splitlines()
    assert any(json.loads(line).get("type") == "token-minted" for line in audit)


def test_the_page_composes_what_this_test_runs() -> None:
    config = page_config(PAGE)
    assert config.count("c.TokenCache.services.update(") == 1
    assert "c.JupyterHub.services = " not in config and "c.JupyterHub.load_roles = " not in config
    assert Path(PAGE).read_text().count("```python") == 1
