"""A real hub with the example service (examples/service/whoami.py) twice: cached and plain HubAuth.

Both run as managed services (separate processes started by the hub) behind
configurable-http-proxy. Used by the end-to-end service tests and the benchmark.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ..hubprocess import ROOT, HubProcess, wait_until_up
from ..servers import MissingBinary, free_port, unavailable

WHOAMI = ROOT / "examples" / "service" / "whoami.py"
SERVICE_SCOPES = ["custom:token-cache:introspect", "custom:token-cache:events"]

CONFIG = """
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.custom_scopes.update({{
    "custom:token-cache:introspect": {{"description": "Introspect tokens"}},
    "custom:token-cache:events": {{"description": "Follow token events"}},
}})
c.JupyterHub.load_roles.append({{"name": "user", "scopes": ["self", "access:services"]}})
c.JupyterHub.load_roles.append({{
    "name": "token-checkers", "scopes": {scopes!r},
    "services": [s["name"] for s in {services!r} if not s.get("plain")],
}})
for s in {services!r}:
    c.JupyterHub.services.append({{
        "name": s["name"], "url": f"http://127.0.0.1:{{s['port']}}",
        "command": [sys.executable, "{whoami}", *s["args"]],
        "environment": {{"PYTHONPATH": "{root}"}},
    }})
c.TokenCache.event_heartbeat = 0.5
c.TokenCache.sweep_interval = 1
c.TokenCache.services = {{"whoami": {{
    "scopes": ["access:services!service=whoami", "access:services!service=whoami-plain"],
    "lifetime": 3600,
}}}}
"""

#: Settings the cached service runs with in the tests: cuts noticed in 2 s, kept 3 s.
FAST = ["--CachedHubAuth.stream_timeout=2", "--CachedHubAuth.disconnected_ttl=3"]


def service(name: str, *args: str, plain: bool = False) -> dict[str, Any]:
    return {"name": name, "port": free_port(), "args": [*args, *(["--plain"] if plain else [])],
            "plain": plain}  # fmt: skip


def services_hub(workdir: Path, services: list[dict[str, Any]], extra: str = "") -> HubProcess:
    config = CONFIG.format(scopes=SERVICE_SCOPES, services=services, whoami=WHOAMI, root=ROOT)
    return HubProcess(workdir, config + extra)


@contextlib.contextmanager
def running(workdir: Path, services: list[dict[str, Any]], extra: str = "") -> Iterator[HubProcess]:
    """A started hub with ``services`` up (a missing binary fails in CI, skips elsewhere)."""
    try:
        hub = services_hub(workdir, services, extra)
    except MissingBinary as e:
        unavailable(e)
    hub.start()
    try:
        wait_services(hub, [s["name"] for s in services])
        yield hub
    finally:
        hub.stop()


def wait_services(hub: HubProcess, names: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            try:
                r = httpx.get(f"{hub.url}/services/{name}/stats", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (
                f"service {name} did not start:\n{hub.log()[-3000:]}"
            )
            time.sleep(0.2)


def whoami(hub: HubProcess, name: str, token: str, client: httpx.Client | None = None) -> int:
    """The status the service answers a request carrying ``token``."""
    get = client.get if client is not None else httpx.get
    r = get(f"{hub.url}/services/{name}/", headers={"Authorization": f"token {token}"}, timeout=30)
    return r.status_code


def api_token(hub: HubProcess, user: str) -> dict[str, str]:
    """A new API token of ``user`` (created if need be): the hub's token model."""
    with hub.admin(direct=True) as api:
        api.post(f"users/{user}")
        r = api.post(f"users/{user}/tokens", json={})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def refused_within(hub: HubProcess, token: str, *, at: str = "whoami", limit: float = 1.0) -> float:
    """Seconds until the service ``at`` (or, for a path, a notebook server) refuses ``token``."""
    start = time.monotonic()
    with httpx.Client() as client:
        while True:
            if at.startswith("/"):
                headers = {"Authorization": f"token {token}"}
                status = client.get(f"{hub.url}{at}", headers=headers).status_code
            else:
                status = whoami(hub, at, token, client)
            if status != 200:
                return time.monotonic() - start
            assert time.monotonic() - start < limit, f"{at} still accepts the token"
            time.sleep(0.01)


def hub_checks(hub: HubProcess) -> int:
    """Introspection requests the hub has answered."""
    with hub.admin(direct=True) as admin:
        return int(admin.get("token-cache/stats").json()["introspections"]["requests"])


class ExternalService:
    """The example service run by the test (not the hub), as an external service or a replica.

    The hub config gets ``{"name": name, "url": ..., "api_token": ...}`` from
    :meth:`entry`; the process gets the environment a managed service would. Stopped by pid.
    """

    def __init__(self, hub: HubProcess, name: str, token: str, *args: str) -> None:
        self.hub, self.name, self.token, self.args = hub, name, token, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/services/{name}/"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = hub.workdir / f"{name}-{self.port}.log"

    def environment(self) -> dict[str, str]:
        """What a managed service would get from the hub."""
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "JUPYTERHUB_API_URL": f"{self.hub.hub_url}/hub/api",
            "JUPYTERHUB_API_TOKEN": self.token,
            "JUPYTERHUB_SERVICE_NAME": self.name,
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{self.port}",
            "JUPYTERHUB_SERVICE_PREFIX": f"/services/{self.name}/",
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([f"access:services!service={self.name}"]),
        }

    def start(self, timeout: float = 30) -> ExternalService:
        env = self.environment()
        with self.log_path.open("ab") as log:
            command = [sys.executable, str(WHOAMI), *self.args]
            self.process = subprocess.Popen(  # noqa: S603 - our own example, by path
                command, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until_up(f"{self.url}stats", self.process, self.log_path, timeout, self.stop)
        return self

    def get(self, token: str, client: httpx.Client | None = None) -> int:
        get = client.get if client is not None else httpx.get
        return get(self.url, headers={"Authorization": f"token {token}"}, timeout=60).status_code

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}stats", timeout=10).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text()


def external(name: str, token: str) -> str:
    """Hub config for an external service and the role to check tokens."""
    return (
        f"c.JupyterHub.services.append({{'name': {name!r}, "
        f"'api_token': {token!r}}})\n"
        f"c.JupyterHub.load_roles.append({{'name': 'checker-{name}', 'scopes': {SERVICE_SCOPES!r}, "
        f"'services': [{name!r}]}})\n"
    )
