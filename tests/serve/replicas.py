"""A real hub with two replicas of ``jupyter-token-cache serve`` behind configurable-http-proxy.

The replicas are external services (started by the test, stopped by pid) registered as
``token-cache`` and ``token-cache-b``: the proxy routes ``/services/<name>/`` to each, as a
load balancer would split one name. Both share one Redis for their edge caches and their
introspection answers; the hub keeps its own cache in memory.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ..e2e.services import ExternalService
from ..hubprocess import HubProcess, wait_until_up
from ..servers import MissingBinary, free_port, unavailable

#: Exactly what a replica's own token needs (callers' requests go on with their credentials).
SCOPES = ["custom:token-cache:introspect", "custom:token-cache:events"]
NAMES = ["token-cache", "token-cache-b"]
SERVICES = {
    "dask": {"scopes": ["access:services!service=dask", "read:users!user"], "lifetime": 3600},
    "short": {"scopes": ["read:users!user"], "lifetime": 120},
}

CONFIG = """
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.load_roles.append({{"name": "user", "scopes": ["self", "access:services"]}})
c.JupyterHub.custom_scopes.update({{
    "custom:token-cache:introspect": {{"description": "Introspect tokens"}},
    "custom:token-cache:events": {{"description": "Follow token events"}},
}})
for name, port, token in {entries!r}:
    c.JupyterHub.services.append({{"name": name, "url": f"http://127.0.0.1:{{port}}", "api_token": token}})
c.JupyterHub.services.append({{"name": "dask"}})
c.JupyterHub.load_roles.append({{"name": "token-cache", "scopes": {scopes!r},
                                "services": [e[0] for e in {entries!r}]}})
c.TokenCache.event_heartbeat = 0.5
c.TokenCache.services = {services!r}
"""

#: Hub requests in its log: "200 POST /hub/api/token-cache/notebook (alice@127.0.0.1) 3.1ms".
REQUEST = re.compile(r"\] (\d{3}) (GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/hub/\S*)")


class Replica(ExternalService):
    """One ``jupyter-token-cache serve`` process with a managed service's environment."""

    def __init__(self, hub: HubProcess, name: str, port: int, token: str, *args: str) -> None:
        super().__init__(hub, name, token, *args)
        self.port = port  # in the hub's config before the hub starts
        #: Through the proxy, as callers reach it.
        self.url = f"{hub.url}/services/{name}"
        self.log_path = hub.workdir / f"{name}.log"

    def spawn(self) -> Replica:
        """Start the process (it waits for the hub, which waits for it)."""
        env = self.environment()
        command = [str(Path(sys.executable).with_name("jupyter-token-cache")), "serve", *self.args]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout: float = 60) -> Replica:
        assert self.process is not None
        wait_until_up(f"{self.url}/health", self.process, self.log_path, timeout, self.stop)
        return self


def hub_requests(hub: HubProcess) -> list[tuple[str, str]]:
    """(method, path) of every request the hub has logged so far (its access log).

    The hub logs a request once its answer is sent, so a request just answered may not
    be in the log yet: a marker request is made, and the log read once it shows; the
    markers are not in the list.
    """
    marker = secrets.token_hex(8)
    httpx.get(f"{hub.hub_url}/hub/api/?marker={marker}", timeout=10)
    deadline = time.monotonic() + 5
    while marker not in (log := hub.log()):
        assert time.monotonic() < deadline, "the hub did not log the marker request"
        time.sleep(0.01)
    found = [(m.group(2), m.group(3)) for m in REQUEST.finditer(log)]
    return [(method, uri.split("?")[0]) for method, uri in found if "?marker=" not in uri]


@contextlib.contextmanager
def replicated_hub(
    workdir: Path, redis_url: str, crypt_key: str, namespace: str, *args: str, config: str = ""
) -> Iterator[tuple[HubProcess, list[Replica]]]:
    """A started hub (``config`` added to its own) and two started replicas (``args``).

    Stopped afterwards, replicas first.
    """
    entries = [(name, free_port(), secrets.token_hex(16)) for name in NAMES]
    config = CONFIG.format(entries=entries, scopes=SCOPES, services=SERVICES) + config
    try:
        hub = HubProcess(workdir, config)
    except MissingBinary as e:
        unavailable(e)
    shared = [
        "--TokenCache.backend=redis", f"--TokenCache.url={redis_url}",
        f"--TokenCache.encryption_key={crypt_key}", f"--TokenCache.namespace={namespace}-edge",
        "--AnswerCache.backend=redis", f"--AnswerCache.url={redis_url}",
        f"--AnswerCache.encryption_key={crypt_key}", f"--AnswerCache.namespace={namespace}-answers",
        "--CachedHubAuth.stream_timeout=2", "--TokenCache.services=" + repr(SERVICES),
    ]  # fmt: skip
    replicas = [Replica(hub, name, port, token, *shared, *args) for name, port, token in entries]
    try:
        # the hub waits for its external services to answer before it routes /hub/ ...
        for replica in replicas:
            replica.spawn()
        hub.start()  # ... and they wait for the hub's API
        for replica in replicas:
            replica.wait()
        yield hub, replicas
    finally:
        for replica in replicas:
            replica.stop()
        hub.stop()


def user_token(hub: HubProcess, user: str, **model: Any) -> dict[str, Any]:
    """A new API token of ``user`` (created if need be): the hub's token model."""
    with hub.admin(direct=True) as api:
        api.post(f"users/{user}")
        r = api.post(f"users/{user}/tokens", json=model)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def hub_stats(hub: HubProcess) -> dict[str, Any]:
    with hub.admin(direct=True) as admin:
        return admin.get("token-cache/stats").json()  # type: ignore[no-any-return]


def post(base: str, route: str, token: str, body: Any = None, client: Any = None) -> httpx.Response:
    """``POST {base}/{route}`` as ``token``'s owner."""
    call = (client or httpx).post
    return call(f"{base}/{route}", json=body, headers={"Authorization": f"token {token}"},  # type: ignore[no-any-return]
                timeout=30)  # fmt: skip
