"""A real hub whose users log in through the test identity provider, for the upstream tokens.

``jupyterhub`` with GenericOAuthenticator (auth state on) as the provider's client
"hub-login", with the token cache (``with_token_cache("generic-oauth")``) or, for the
side-by-side, without it; named servers that run tests/e2e/upstream_probe.py; the admin
service may read auth states. Users log in with ``OIDCProvider.log_in``: the hub's login
redirect, the provider's own login and consent pages, the hub's callback.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from ..hubprocess import ROOT, HubProcess
from ..oidc.server import HUB_LOGIN, HUB_SCOPES, OIDCProvider

UPSTREAM_SCOPE = "custom:token-cache:upstream"
#: What oauthenticator's documented approach gives servers instead: the user's whole auth state.
AUTH_STATE_SCOPE = "admin:auth_state!user"
TARGETS = {
    "s3": {"method": "resource", "resource": "urn:target:s3", "scopes": ["s3:read"]},
    "api": {"method": "exchange", "audience": "internal-api", "scopes": ["api:read"]},
}

LOGIN = """
c.JupyterHub.authenticator_class = {authenticator}
c.GenericOAuthenticator.client_id, c.GenericOAuthenticator.client_secret = {client!r}
c.GenericOAuthenticator.authorize_url = "{issuer}/auth"
c.GenericOAuthenticator.token_url = "{issuer}/token"
c.GenericOAuthenticator.userdata_url = "{issuer}/me"
c.GenericOAuthenticator.username_claim = "preferred_username"
c.GenericOAuthenticator.scope = {scopes!r}
c.GenericOAuthenticator.allow_all = True
c.Authenticator.enable_auth_state = True
c.Authenticator.auth_refresh_age = {refresh_age}
c.CryptKeeper.keys = [{crypt_key!r}]
c.JupyterHub.load_roles.append({{"name": "auth-state-reader", "scopes": ["admin:auth_state"],
                                "services": ["admin-service"]}})
"""

UPSTREAM = """
c.JupyterHub.custom_scopes.update({{
    {scope!r}: {{"description": "The user's identity-provider tokens"}},
    "custom:token-cache:introspect": {{"description": "Introspect tokens"}},
    "custom:token-cache:events": {{"description": "Follow token events"}},
}})
c.JupyterHub.load_roles.append({{"name": "events-reader", "scopes": ["custom:token-cache:events"],
                                "services": ["admin-service"]}})
c.TokenCache.backend = "redis"
c.TokenCache.url = {redis_url!r}
c.TokenCache.encryption_key = {crypt_key!r}
c.TokenCache.namespace = {namespace!r}
c.UpstreamTokens.enabled = True
c.UpstreamTokens.issuer = {issuer!r}
c.UpstreamTokens.targets = {targets!r}
"""

SERVERS = """
c.JupyterHub.allow_named_servers = True
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = [sys.executable, "-m", "tests.e2e.upstream_probe"]
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.Spawner.environment = {{"PYTHONPATH": "{root}", "UPSTREAM_PROBE_DIR": "{probes}",
                         "UPSTREAM_USERINFO": "{issuer}/me"}}
c.Spawner.server_token_scopes = ["access:servers!server", "users:activity!user", {scope!r}]
c.SimpleLocalProcessSpawner.home_dir_template = "{workdir}/home/{{username}}"
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
"""


def config(
    workdir: Path,
    provider: OIDCProvider,
    crypt_key: str,
    *,
    redis_url: str = "",
    cached: bool = True,
    refresh_age: int = 300,
    servers: bool = True,
) -> str:
    """The hub's configuration: the login, and with ``cached`` the token cache's upstream
    tokens (servers get the upstream scope); without, oauthenticator alone, whose documented
    approach gives servers ``admin:auth_state!user``."""
    text = ("from jupyter_token_cache import with_token_cache\n" if cached else "") + LOGIN.format(
        authenticator='with_token_cache("generic-oauth")' if cached else '"generic-oauth"',
        client=HUB_LOGIN,
        issuer=provider.issuer,
        scopes=HUB_SCOPES.split(),
        refresh_age=refresh_age,
        crypt_key=crypt_key,
    )
    if cached:
        text += UPSTREAM.format(
            scope=UPSTREAM_SCOPE,
            redis_url=redis_url,
            crypt_key=crypt_key,
            namespace=f"upstream-{workdir.name}",
            issuer=provider.issuer,
            targets=TARGETS,
        )
    scope = UPSTREAM_SCOPE if cached else AUTH_STATE_SCOPE
    text += f'c.JupyterHub.load_roles.append({{"name": "user", "scopes": ["self", {scope!r}]}})\n'
    if servers:
        probes = workdir / "probes"
        probes.mkdir(parents=True, exist_ok=True)
        text += SERVERS.format(
            root=ROOT, probes=probes, issuer=provider.issuer, workdir=workdir, scope=scope
        )
    return text


def spawn(hub: HubProcess, user: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """Start ``user``'s servers ``names`` ("" the default one); each probe's findings, by name."""
    probes = hub.workdir / "probes"
    with hub.admin() as api:
        for name in names:
            r = api.post(f"users/{user}/servers/{name}" if name else f"users/{user}/server")
            assert r.status_code in (201, 202), r.text
        deadline = time.monotonic() + 120
        while True:
            servers = api.get(f"users/{user}").json()["servers"]
            if all(servers.get(name, {}).get("ready") for name in names):
                break
            assert time.monotonic() < deadline, f"servers not ready: {servers}"
            time.sleep(0.3)
    return {name: json.loads((probes / f"{name or 'default'}.json").read_text()) for name in names}


def auth_state(hub: HubProcess, user: str) -> dict[str, Any]:
    """``user``'s auth state, as the hub's REST API gives it to a holder of admin:auth_state."""
    with hub.admin() as api:
        return api.get(f"users/{user}").json().get("auth_state") or {}  # type: ignore[no-any-return]


def upstream(
    hub: HubProcess, token: str, body: dict[str, Any] | None = None, *, base: str | None = None
) -> httpx.Response:
    """``POST .../upstream`` as ``token``'s owner (at the hub, or at ``base``: a replica)."""
    url = f"{base or hub.url + '/hub/api/token-cache'}/upstream"
    return httpx.post(url, json=body or {}, headers={"Authorization": f"token {token}"}, timeout=60)


def events(hub: HubProcess) -> str:
    """The event stream's replay (everything the hub still holds), as the text it sends."""
    lines = []
    with hub.admin() as api, api.stream("GET", "token-cache/events", params={"replay": "all"}) as r:
        for line in r.iter_lines():
            lines.append(line)
            if line.startswith("retry:"):  # caught up
                break
    return "\n".join(lines)


def at_once(
    hub: HubProcess, calls: list[tuple[str, str, str, dict[str, Any] | None]]
) -> list[httpx.Response]:
    """``calls`` (method, URL, token, JSON body) sent at once over warm connections.

    A hundred connections are opened first (``GET /hub/api/``, which needs no credential
    and so refreshes nothing), so that the requests reach the hub together rather than
    one connection set-up apart.
    """

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=180, limits=limits) as client:
            await asyncio.gather(*(client.get(f"{hub.url}/hub/api/") for _ in range(100)))
            return await asyncio.gather(
                *(
                    client.request(
                        method, url, json=body, headers={"Authorization": f"token {token}"}
                    )
                    for method, url, token, body in calls
                )
            )

    return asyncio.run(run())
