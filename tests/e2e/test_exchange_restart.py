"""The token exchange across a real hub restart on the memory backend: nothing is forgotten."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ..hubprocess import running_hub
from ..oidc.server import HUB_CLIENT, OIDCProvider

pytestmark = pytest.mark.e2e

CONFIG = """
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.TokenExchange.issuer = {issuer!r}
c.TokenExchange.client_id, c.TokenExchange.client_secret = {client!r}
c.TokenExchange.allowed_audiences = ["jupyterhub"]
c.TokenExchange.auto_create_users = True
"""
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


def exchange(hub_url: str, upstream: str) -> httpx.Response:
    form = {"grant_type": GRANT, "subject_token": upstream, "subject_token_type": ACCESS}
    return httpx.post(f"{hub_url}/hub/api/token-cache/exchange", data=form, timeout=30)


def test_a_hub_restarted_on_the_memory_backend_still_revokes_an_upstream_sessions_tokens(
    tmp_path: Path, oidc_provider: OIDCProvider
) -> None:
    config = CONFIG.format(issuer=oidc_provider.issuer, client=HUB_CLIENT)
    upstream = oidc_provider.token("alice", "urn:hub:opaque")
    with running_hub(tmp_path, config) as hub:
        r = exchange(hub.hub_url, upstream)
        assert r.status_code == 200, r.text
        minted = r.json()["access_token"]
        hub.stop()  # every answer the memory backend held is gone with the process
        oidc_provider.revoke(upstream)
        hub.start()
        refused = exchange(hub.hub_url, upstream)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        me = httpx.get(f"{hub.hub_url}/hub/api/user", headers={"Authorization": f"token {minted}"})
        assert me.status_code == 403  # the session it was minted for ended at the provider
        assert upstream not in hub.log() and minted not in hub.log()
