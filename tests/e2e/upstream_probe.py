"""Runs as a spawned server's command: get the user's upstream token as a notebook would, then serve.

With the server's own environment (JUPYTERHUB_API_URL, JUPYTERHUB_API_TOKEN): one call of
``get_upstream_token()``, and the identity provider's userinfo endpoint (a service that
trusts the provider's tokens) called with ``UpstreamAuth`` (httpx) and
``UpstreamRequestsAuth`` (requests). Findings go to ``$UPSTREAM_PROBE_DIR/<server>.json``,
with the server's own API token, which the tests then use as this server's credential;
then the process becomes jupyterhub-singleuser with the same arguments.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import httpx
import requests

from jupyter_token_cache.client import (
    TokenCacheError,
    UpstreamAuth,
    UpstreamRequestsAuth,
    get_upstream_token,
)


def probe() -> dict[str, object]:
    userinfo = os.environ["UPSTREAM_USERINFO"]
    try:
        token = get_upstream_token()
    except TokenCacheError as e:
        return {"error": e.status, "api_token": os.environ["JUPYTERHUB_API_TOKEN"]}
    return {
        "expires_in": token.expires_in,
        "token_type": token.token_type,
        "userinfo_httpx": httpx.get(userinfo, auth=UpstreamAuth()).json().get("sub"),
        "userinfo_requests": requests.get(userinfo, auth=UpstreamRequestsAuth(), timeout=30)
        .json()
        .get("sub"),
        "api_token": os.environ["JUPYTERHUB_API_TOKEN"],
    }


if __name__ == "__main__":
    name = os.environ.get("JUPYTERHUB_SERVER_NAME") or "default"
    Path(os.environ["UPSTREAM_PROBE_DIR"], f"{name}.json").write_text(json.dumps(probe()))
    server = str(Path(sys.executable).with_name("jupyterhub-singleuser"))
    os.execv(server, [server, *sys.argv[1:]])
