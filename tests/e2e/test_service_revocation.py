"""End to end: every way a token ends, refused by the example service and a notebook server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from ..hubprocess import ROOT, HubProcess
from .services import FAST, SERVICE_SCOPES, api_token, refused_within, running, service, whoami

pytestmark = pytest.mark.e2e
IDENTITY = "jupyter_token_cache.services.identity.CachedIdentityProvider"

SERVERS = """
c.JupyterHub.load_roles.append({{"name": "server-checkers", "scopes": {scopes!r}, "users": ["alice"]}})
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = [sys.executable, "-m", "tests.e2e.probe"]
c.Spawner.args = [*(["--allow-root"] if os.geteuid() == 0 else []),
                  "--ServerApp.identity_provider_class={identity}", "--CachedHubOAuth.stream_timeout=2"]
c.Spawner.environment = {{"PYTHONPATH": "{root}", "E2E_PROBE_OUT": "{workdir}/probe.json"}}
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", *{scopes!r}]
c.SimpleLocalProcessSpawner.home_dir_template = "{workdir}/home/{{username}}"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.TokenCache.notebook_scopes = ["access:servers!user", "read:users!user", "access:services!service=whoami", "access:services!service=whoami-plain"]
c.TokenCache.services["dask"] = {{"scopes": ["read:users!user", "access:servers!user"], "lifetime": 3600}}
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("revocation")
    extra = SERVERS.format(scopes=SERVICE_SCOPES, identity=IDENTITY, root=ROOT, workdir=workdir)
    with running(
        workdir, [service("whoami", *FAST), service("whoami-plain", plain=True)], extra
    ) as hub:
        yield hub


def mint(hub: HubProcess, parent: str, route: str = "internal") -> dict[str, str]:
    body = {"service": "whoami"} if route == "internal" else {}
    r = httpx.post(f"{hub.hub_url}/hub/api/token-cache/{route}", json=body,
                   headers={"Authorization": f"token {parent}"})  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def accepted(hub: HubProcess, *tokens: str) -> None:
    for token in tokens:
        assert whoami(hub, "whoami", token) == 200
        assert whoami(hub, "whoami-plain", token) == 200


def test_parent_cascade_user_deletion_and_admin_reset(hub: HubProcess) -> None:
    parent = api_token(hub, "bob")
    child = mint(hub, parent["token"])
    accepted(hub, parent["token"], child["token"])
    with hub.admin(direct=True) as api:
        assert api.delete(f"users/bob/tokens/{parent['id']}").status_code == 204
    assert refused_within(hub, parent["token"]) < 1
    assert refused_within(hub, child["token"]) < 1  # parent-revoked
    assert whoami(hub, "whoami-plain", child["token"]) == 200

    parent = api_token(hub, "carol")
    child = mint(hub, parent["token"])
    accepted(hub, child["token"])
    with hub.admin(direct=True) as api:
        assert api.delete("token-cache/users/carol", params={"revoke": "true"}).status_code == 200
    assert refused_within(hub, child["token"]) < 1  # admin-reset

    parent = api_token(hub, "dave")
    accepted(hub, parent["token"])
    with hub.admin(direct=True) as api:
        assert api.delete("users/dave").status_code == 204
    assert refused_within(hub, parent["token"]) < 1  # user-deleted
    assert whoami(hub, "whoami-plain", parent["token"]) == 200


def test_logout(hub: HubProcess) -> None:
    browser = httpx.Client(base_url=f"{hub.url}/hub/", follow_redirects=False)
    r = browser.get("login")
    xsrf = browser.cookies.get("_xsrf") or re.search(r'name="_xsrf" value="([^"]+)"', r.text).group(
        1
    )  # type: ignore[union-attr]
    r = browser.post("login", data={"username": "erin", "password": "x", "_xsrf": xsrf})
    assert r.status_code == 302, r.text
    headers = {"X-XSRFToken": browser.cookies.get("_xsrf") or xsrf, "Sec-Fetch-Mode": "cors"}
    r = browser.post("api/token-cache/internal", json={"service": "whoami"}, headers=headers)
    assert r.status_code == 200, r.text
    child = r.json()["token"]
    accepted(hub, child)
    browser.get("logout")
    assert refused_within(hub, child) < 1  # logout
    assert whoami(hub, "whoami-plain", child) == 200
    browser.close()


def test_server_stop_and_a_notebook_server_with_the_identity_provider(hub: HubProcess) -> None:
    user = api_token(hub, "alice")
    with hub.admin(direct=True) as api:
        assert api.post("users/alice/server").status_code in (201, 202)
        deadline = time.monotonic() + 90
        while not api.get("users/alice").json()["servers"].get("", {}).get("ready"):
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.3)
    probe = json.loads((hub.workdir / "probe.json").read_text())
    notebook = probe["notebook_token"]
    accepted(hub, notebook)

    # the server checks tokens with CachedHubOAuth: a deleted one is refused within 1 s
    status = "/user/alice/api/status"
    headers = {"Authorization": f"token {user['token']}"}
    assert httpx.get(f"{hub.url}{status}", headers=headers).status_code == 200
    assert httpx.get(f"{hub.url}{status}", headers=headers).status_code == 200
    with hub.admin(direct=True) as api:
        assert api.delete(f"users/alice/tokens/{user['id']}").status_code == 204
    # (jupyter-server's own provider, with HubOAuth, would accept it for 5 more minutes)
    assert refused_within(hub, user["token"], at=status) < 1

    with hub.admin(direct=True) as api:
        assert api.delete("users/alice/server").status_code in (202, 204)
    assert (
        refused_within(hub, notebook, limit=30) < 30
    )  # server-stopped (the stop itself takes time)
    assert whoami(hub, "whoami-plain", notebook) == 200
