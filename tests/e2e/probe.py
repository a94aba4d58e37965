"""Runs as the spawned server's command: ask the hub for tokens through client.py, then serve.

Everything here uses the server's own environment — JUPYTERHUB_API_URL,
JUPYTERHUB_API_TOKEN and the notebook-token variable the extension set — exactly as
code in a notebook would. Findings go to $E2E_PROBE_OUT (comparisons, ids, and the
notebook token, which the test uses to reach this server through the proxy); then the process becomes jupyterhub-singleuser with the same arguments.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from jupyter_token_cache.client import (
    TokenCacheClient,
    TokenCacheError,
    get_internal_token,
    get_notebook_token,
)


def probe() -> dict[str, object]:
    handed = os.environ.get("JUPYTERHUB_NOTEBOOK_TOKEN", "")
    notebook = get_notebook_token()
    internal = get_internal_token("dask")
    again = get_internal_token("dask", minimum_lifetime=60)
    with TokenCacheClient() as client:
        try:
            client.get_internal_token("dask", ["admin:users"])
            refused = None
        except TokenCacheError as e:
            refused = e.status
    return {
        "env_token_set": bool(handed),
        "notebook_is_env_token": notebook.token == handed,
        "notebook_cached": notebook.cached,
        "notebook_id": notebook.id,
        "notebook_token": notebook.token,
        "internal_id": internal.id,
        "internal_scopes": internal.scopes,
        "internal_reused": again.token == internal.token and again.cached,
        "wider_scopes_status": refused,
    }


if __name__ == "__main__":
    Path(os.environ["E2E_PROBE_OUT"]).write_text(json.dumps(probe()))
    server = str(Path(sys.executable).with_name("jupyterhub-singleuser"))
    os.execv(server, [server, *sys.argv[1:]])
