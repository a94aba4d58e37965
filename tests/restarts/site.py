"""A whole site on one Redis: the real hub, replicas of ``serve``, a CachedHubAuth service.

Used by the restart matrix and the storm across restarts: every process can be stopped
(SIGTERM), killed (SIGKILL), frozen (SIGSTOP) and thawed, and started again as a new
process; a spare replica and a spare service are registered with the hub from the start
so that brand-new processes can join after a revocation.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..e2e.services import ExternalService
from ..e2e.spawning import spawner_config
from ..hubprocess import HubProcess
from ..serve.replicas import REQUEST, SCOPES, Replica
from ..servers import MissingBinary, free_port, unavailable

#: Replicas and services: the first two of each run from the start; the last are spares.
REPLICAS = ["token-cache", "token-cache-b", "token-cache-new"]
SERVICES = ["whoami", "whoami-new"]
DASK = {"dask": {"scopes": ["read:users!user"], "lifetime": 3600}}

CONFIG = """
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.JupyterHub.load_roles.append({{"name": "user", "scopes": ["self", "access:services"]}})
c.JupyterHub.custom_scopes.update({{
    "custom:token-cache:introspect": {{"description": "Introspect tokens"}},
    "custom:token-cache:events": {{"description": "Follow token events"}},
}})
# without a URL: the hub neither routes to them nor waits for them; tests call their ports
for name, port, token in {entries!r}:
    c.JupyterHub.services.append({{"name": name, "api_token": token}})
c.JupyterHub.load_roles.append({{"name": "checkers", "scopes": {scopes!r},
                                "services": [e[0] for e in {entries!r}]}})
c.JupyterHub.load_roles.append({{"name": "introspector", "scopes": {scopes!r},
                                "services": ["admin-service"]}})
c.TokenCache.notebook_scopes = ["read:users!user", "access:servers!user", "access:services"]
c.TokenCache.event_heartbeat = 0.5
c.TokenCache.sweep_interval = 1
c.TokenCache.services = {dask!r}
"""

#: Settings of every replica and service: a cut is noticed within 2 s.
FOLLOW = ["--CachedHubAuth.stream_timeout=2", "--CachedHubAuth.check_timeout=5"]


class Service(ExternalService):
    """The example whoami service (CachedHubAuth), on a port the hub config names."""

    def __init__(self, hub: HubProcess, name: str, port: int, token: str, *args: str) -> None:
        super().__init__(hub, name, token, *args)
        self.port = port
        self.url = f"http://127.0.0.1:{port}/services/{name}/"


@dataclass
class Process:
    """One process of the site, whatever it is, with the signals a test sends it."""

    name: str
    part: Any  # HubProcess, Replica or Service

    @property
    def pid(self) -> int:
        assert self.part.process is not None
        return int(self.part.process.pid)

    def start(self) -> None:
        if isinstance(self.part, Replica):
            self.part.spawn().wait()
        else:
            self.part.start()

    def stop(self) -> None:
        self.part.stop()

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.part.process.wait()

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


@dataclass
class Site:
    hub: HubProcess
    replicas: dict[str, Replica]
    services: dict[str, Service]
    running: set[str] = field(default_factory=set)

    def process(self, name: str) -> Process:
        if name == "hub":
            return Process("hub", self.hub)
        return Process(name, self.replicas.get(name) or self.services[name])

    def admin(self) -> httpx.Client:
        return self.hub.admin(direct=True)

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.hub.workdir / "jupyterhub.sqlite")

    def followers(self) -> list[str]:
        return [name for name in (*self.replicas, *self.services) if name in self.running]

    def connected(self, name: str) -> bool:
        """Whether the event stream is live at a replica or service."""
        if name in self.services:
            return bool(self.services[name].stats()["stream"]["connected"])
        r = httpx.get(f"{self.replicas[name].url}/health", timeout=10)
        return bool(r.json()["stream_connected"])

    def wait_connected(self, names: list[str] | None = None, timeout: float = 30) -> None:
        """Until each follower's stream is live (after a hub restart or a thaw)."""
        deadline = time.monotonic() + timeout
        for name in names or self.followers():
            while not self.connected(name):
                assert time.monotonic() < deadline, f"{name}'s stream did not come back"
                time.sleep(0.05)

    def hub_requests(self) -> list[tuple[str, str]]:
        """(method, path) of the requests in the hub's access log so far."""
        found = [(m.group(2), m.group(3)) for m in REQUEST.finditer(self.hub.log())]
        return [(method, uri.split("?")[0]) for method, uri in found]


@contextlib.contextmanager
def site(workdir: Path, redis_url: str, crypt_key: str) -> Iterator[Site]:
    """The hub, replicas ``token-cache`` and ``token-cache-b`` and service ``whoami`` started;
    ``token-cache-new`` and ``whoami-new`` registered, not started."""
    entries = [(name, free_port(), secrets.token_hex(16)) for name in (*REPLICAS, *SERVICES)]
    config = CONFIG.format(entries=entries, scopes=SCOPES, dask=DASK) + spawner_config(workdir)
    try:
        hub = HubProcess(workdir, "import os, sys\n" + config)
    except MissingBinary as e:
        unavailable(e)
    namespace = secrets.token_hex(4)
    redis = [
        "--TokenCache.backend=redis", f"--TokenCache.url={redis_url}",
        f"--TokenCache.encryption_key={crypt_key}", f"--TokenCache.namespace={namespace}-edge",
        "--AnswerCache.backend=redis", f"--AnswerCache.url={redis_url}",
        f"--AnswerCache.encryption_key={crypt_key}", f"--AnswerCache.namespace={namespace}-answers",
    ]  # fmt: skip
    replicas, services = {}, {}
    for name, port, token in entries:
        if name in REPLICAS:
            args = [*redis, *FOLLOW, "--TokenCache.services=" + repr(DASK)]
            replicas[name] = Replica(hub, name, port, token, *args)
            replicas[name].url = f"http://127.0.0.1:{port}/services/{name}"  # not via the proxy
        else:
            args = [arg for arg in redis if arg.startswith("--AnswerCache")] + FOLLOW
            services[name] = Service(hub, name, port, token, *args)
    made = Site(hub, replicas, services)
    try:
        hub.start()
        for name in REPLICAS[:2]:
            replicas[name].spawn().wait()
            made.running.add(name)
        services[SERVICES[0]].start()
        made.running.add(SERVICES[0])
        yield made
    finally:
        for part in (*replicas.values(), *services.values()):
            with contextlib.suppress(Exception):
                part.stop()
        hub.stop()
        for part in (*replicas.values(), *services.values()):
            if part.log_path.exists():
                assert "Traceback" not in part.log_path.read_text(), part.log_path.read_text()


# -- what a test asks of each process -----------------------------------------------------


def accepted_by_service(site: Site, name: str, token: str, client: httpx.Client) -> bool:
    r = client.get(site.services[name].url, headers={"Authorization": f"token {token}"})
    assert r.status_code in (200, 401, 403), r.text
    return r.status_code == 200


def active_at_replica(site: Site, name: str, token: str, client: httpx.Client) -> bool:
    """What introspection at replica ``name`` says of ``token``."""
    url = f"http://127.0.0.1:{site.replicas[name].port}/services/{name}/introspect"
    r = client.post(url, json={"token": token},
                    headers={"Authorization": f"token {site.hub.service_token}"})  # fmt: skip
    assert r.status_code == 200, r.text
    return bool(r.json()["active"])


def notebook_at_replica(
    site: Site, name: str, credential: str, client: httpx.Client
) -> dict[str, Any] | None:
    """The notebook token replica ``name`` hands ``credential``'s owner (None: refused)."""
    url = f"http://127.0.0.1:{site.replicas[name].port}/services/{name}/notebook"
    r = client.post(url, json={}, headers={"Authorization": f"token {credential}"})
    assert r.status_code in (200, 403), r.text
    return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]
