"""The service entry of docs/replicated.md, as written: the hub starts the replica, servers use it.

The two configuration blocks of the page are taken from it and given this machine's
paths, ports and Redis; then the real ``jupyterhub`` command starts the managed
``jupyter-token-cache serve`` (its ``command``), and a spawned single-user server gets
its tokens through the client, which finds the service from ``$JUPYTER_TOKEN_CACHE_URL``
(``c.TokenCache.api_url``). So the page's entry, role and settings are what is tested.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..e2e.spawning import spawn_and_probe, spawner_config
from ..hubprocess import ROOT, HubProcess, running_hub
from ..servers import RedisServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

PAGE = ROOT / "docs" / "replicated.md"
#: The site's own: the dask service the page's policy names, and users who may use services.
SITE = """
c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.services.append({"name": "dask"})
c.JupyterHub.load_roles.append({"name": "user", "scopes": ["self", "access:services"]})
"""


def page_blocks() -> tuple[str, str]:
    """The page's hub configuration and shared token-cache file (its two Python blocks)."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    hub = next(b for b in blocks if b.startswith("# jupyterhub_config.py"))
    shared = next(b for b in blocks if b.startswith("# /etc/jupyterhub/token_cache_config.py"))
    return hub, shared


@pytest.fixture
def managed(tmp_path: Path, redis_server: RedisServer, crypt_key: str) -> Iterator[HubProcess]:
    """The hub with the page's configuration, on this machine (the replica started by it)."""
    hub_block, shared_block = page_blocks()
    shared_file = tmp_path / "token_cache_config.py"
    shared_file.write_text(shared_block.replace("redis://redis:6379/0", redis_server.url))
    command = str(Path(sys.executable).with_name("jupyter-token-cache"))
    hub_block = (
        hub_block.replace("/etc/jupyterhub/token_cache_config.py", str(shared_file))
        .replace('"jupyter-token-cache"', repr(command))
        .replace("http://127.0.0.1:10102", f"http://127.0.0.1:{free_port()}")
        # the proxy's public URL: the port the hub's base configuration picked
        .replace('"http://proxy-public/', 'f"http://127.0.0.1:{c.JupyterHub.port}/')
    )  # fmt: skip
    config = (
        "import os, sys\nfrom jupyter_token_cache import with_token_cache\n"
        f"os.environ['JUPYTERHUB_CRYPT_KEY'] = {crypt_key!r}  # the deployment's secret\n"
        + SITE
        + spawner_config(tmp_path)
        + hub_block
    )
    with running_hub(tmp_path, config) as hub:
        yield hub


def test_the_pages_service_entry_serves_a_spawned_server(
    managed: HubProcess, tmp_path: Path
) -> None:
    hub = managed
    service = f"{hub.url}/services/token-cache"
    deadline = time.monotonic() + 60  # the hub starts the replica; it waits for the hub
    while httpx.get(f"{service}/health").status_code != 200:
        assert time.monotonic() < deadline, "the managed replica did not come up"
        time.sleep(0.2)
    assert httpx.get(f"{service}/health").json() == {"stream_connected": True}
    api = hub.admin()
    found = spawn_and_probe(api, "alice", tmp_path)
    # the token handed at spawn is the one the service serves: one policy, one authority
    assert found["env_token_set"] and found["notebook_is_env_token"] and found["notebook_cached"]
    assert "access:services!service=dask" in found["internal_scopes"]
    assert found["internal_reused"] is True
    assert found["wider_scopes_status"] == 403
    # ... and the client asked the service, not the hub's own route
    replica = api.get(f"{service}/stats", headers=api.headers).json()["replica"]
    # the notebook token minted at spawn, reused; the dask token minted, then served again
    # to a request with a minimum lifetime; the wider scopes refused by the hub
    assert replica["answers"] == {"hub_reused": 1, "hub_minted": 1, "hits": 1}, replica
    assert replica["hub_requests"]["POST /notebook"] == 1
    assert replica["hub_requests"]["POST /internal"] == 2
