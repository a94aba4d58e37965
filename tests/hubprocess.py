"""Run the real ``jupyterhub`` command (with configurable-http-proxy) on loopback ports.

Used by the end-to-end test and the benchmarks: the hub gets a generated config in its
own directory, an admin service token, and is stopped (with its proxy and servers) by
SIGTERM, then SIGKILL of its process group if it lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx

from .servers import PORT_ATTEMPTS, PORT_TAKEN, MissingBinary, free_port, unavailable

ROOT = Path(__file__).resolve().parents[1]
R = TypeVar("R")

BASE_CONFIG = """
import os
import sys
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/cookie_secret"
c.JupyterHub.pid_file = "{workdir}/jupyterhub.pid"
c.ConfigurableHTTPProxy.pid_file = "{workdir}/proxy.pid"
c.JupyterHub.services = [{{"name": "admin-service", "api_token": "{service_token}"}}]
c.JupyterHub.load_roles = [{{
    "name": "admin-service",
    "scopes": ["admin:users", "admin:servers", "tokens", "custom:token-cache:admin"],
    "services": ["admin-service"],
}}]
c.JupyterHub.custom_scopes = {{"custom:token-cache:admin": {{"description": "Token cache stats and resets"}}}}
"""


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float,
                  stop: Callable[[], None], broken: Callable[[], bool] = bool) -> None:
    """Poll ``url`` until it answers 200; if ``process`` exits, ``broken()`` says it cannot
    come up or time runs out, stop it and raise with the end of its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or broken() or time.monotonic() > deadline:
            stop()
            raise RuntimeError(f"{process.args!r} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


class HubProcess:
    """A ``jupyterhub -f jupyterhub_config.py`` process; ``config`` is appended to the base."""

    def __init__(self, workdir: Path, config: str) -> None:
        if shutil.which("configurable-http-proxy") is None:
            raise MissingBinary(
                "configurable-http-proxy not found (npm install -g configurable-http-proxy)"
            )
        self.workdir = workdir
        self.service_token = secrets.token_hex(16)
        self.config = config
        workdir.mkdir(parents=True, exist_ok=True)
        self.pick_ports()
        self.log_path = workdir / "jupyterhub.log"
        self.process: subprocess.Popen[bytes] | None = None
        #: Process groups of every start (a restarted hub leaves its proxy in the first).
        self._groups: list[int] = []

    def pick_ports(self) -> None:
        """Ports for the proxy, its API and the hub, written into the hub's config file."""
        self.port, self.hub_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        #: The hub itself, without the proxy in between.
        self.hub_url = f"http://127.0.0.1:{self.hub_port}"
        text = BASE_CONFIG.format(port=self.port, hub_port=self.hub_port, proxy_api_port=free_port(),
                                  workdir=self.workdir, service_token=self.service_token) + self.config
        (self.workdir / "jupyterhub_config.py").write_text(text)

    def start(self, timeout: float = 60) -> HubProcess:
        """Start the hub (and its proxy); the first start, on new ports again if another
        process took one of them first (a restart keeps them: clients hold the URLs)."""
        attempts = PORT_ATTEMPTS if self.process is None else 1
        for attempt in range(1, attempts + 1):
            mark = self.log_path.stat().st_size if self.log_path.exists() else 0
            log = self.log_path.open("ab")
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("jupyterhub")), "-f", "jupyterhub_config.py"],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
            log.close()
            self._groups.append(self.process.pid)

            def port_taken(mark: int = mark) -> bool:
                # the proxy then lives on, its API answering, the public port another's
                said = self.log_path.read_bytes()[mark:].decode(errors="replace")
                return "EADDRINUSE" in said or PORT_TAKEN in said

            try:
                wait_until_up(f"{self.url}/hub/api/", self.process, self.log_path, timeout,
                              self.stop, port_taken)
                return self
            except RuntimeError:
                if attempt == attempts or not port_taken():
                    raise
                self.pick_ports()
        return self

    def admin(self, *, direct: bool = False) -> httpx.Client:
        """A client for the hub's REST API with the admin service's token."""
        base = self.hub_url if direct else self.url
        return httpx.Client(base_url=f"{base}/hub/api/", timeout=60,
                            headers={"Authorization": f"token {self.service_token}"})  # fmt: skip

    def stop(self) -> None:
        """SIGTERM the hub; then SIGKILL whatever is left of its process group (a proxy
        or services orphaned by a hub that was killed)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a test may have stopped it
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        for group in self._groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.process.wait()

    def kill(self) -> None:
        """SIGKILL the hub alone: its proxy and managed services are left running."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text()


@contextlib.contextmanager
def running_hub(workdir: Path, config: str) -> Iterator[HubProcess]:
    """A started hub, stopped afterwards (no proxy binary: fails in CI, skips elsewhere)."""
    try:
        hub = HubProcess(workdir, config)
    except MissingBinary as e:
        unavailable(e)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


async def flood(
    send: Callable[[httpx.AsyncClient, int], Awaitable[R]], *, clients: int = 200, each: int = 5
) -> list[R]:
    """``clients`` concurrent clients through the proxy, each sending ``each`` requests, one
    after the other: ``send(pool, k)`` sends one for client ``k``; every answer, in order.

    Notes
    -----
    Not ``clients * each`` requests queued on one pool: httpcore assigns its queue in
    O(queued x connections) at every answer (27-31 s of the test's CPU against 7-8 s for
    1,000 requests, measured under load), which left a pooled connection unused for
    seconds after its answer, and the proxy closes a connection idle for 5 s (its
    keep-alive timeout) just as the request sent on it arrives ("Server disconnected
    without sending a response"). The pool also retires a connection idle for 2 s, before
    the proxy would, as a client should.
    """
    limits = httpx.Limits(max_connections=clients, keepalive_expiry=2)
    async with httpx.AsyncClient(limits=limits, timeout=60) as pool:

        async def client(k: int) -> list[R]:
            return [await send(pool, k) for _ in range(each)]

        return [r for rs in await asyncio.gather(*map(client, range(clients))) for r in rs]
