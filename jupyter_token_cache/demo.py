"""The demo hub: ``python -m jupyter_token_cache.demo`` (what ``./run demo`` runs).

Starts ``jupyterhub`` with ``examples/demo_config.py`` — sqlite, the memory backend,
configurable-http-proxy, local servers — creates the test user "demo" and a token for
it, and prints what to call. ``--check`` makes those calls itself and exits (CI).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_hub(workdir: Path, port: int, service_token: str, password: str) -> subprocess.Popen[bytes]:
    config = EXAMPLES / "demo_config.py"
    if not config.exists():
        sys.exit(f"{config} not found: run the demo from a clone of the repository")
    env = {
        **os.environ,
        "DEMO_DIR": str(workdir),
        "DEMO_PORT": str(port),
        "DEMO_HUB_PORT": str(free_port()),
        "DEMO_PROXY_API_PORT": str(free_port()),
        "DEMO_WHOAMI_PORT": str(free_port()),
        "DEMO_SERVICE_TOKEN": service_token,
        "DEMO_PASSWORD": password,
    }
    log = (workdir / "jupyterhub.log").open("ab")
    hub = Path(sys.executable).with_name("jupyterhub")
    return subprocess.Popen(  # noqa: S603 - our own jupyterhub and config file
        [str(hub), "-f", str(config)], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def progress(message: str, *, quiet: bool = False) -> None:
    """One line per start-up step on stderr (the instructions go to stdout); ``--quiet`` drops them."""
    if not quiet:
        print(f"demo: {message}", file=sys.stderr, flush=True)


def stop_on_sigterm() -> None:
    """Make SIGTERM (``kill <pid>``, a notebook's ``terminate()``) end the demo as Ctrl-C does,
    so the ``finally`` below stops jupyterhub, and jupyterhub its proxy, instead of orphaning them."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def wait_ready(
    url: str, hub: subprocess.Popen[bytes], log: Path, timeout: float = 60, quiet: bool = False
) -> None:
    start = time.monotonic()
    deadline = start + timeout
    said = 0
    while time.monotonic() < deadline:
        waited = int(time.monotonic() - start)
        if waited >= said + 5:
            said = waited
            progress(f"waiting for jupyterhub to answer ({waited} s of at most {timeout:.0f} s)", quiet=quiet)
        if hub.poll() is not None:
            sys.exit(f"jupyterhub exited; see {log}:\n" + log.read_text()[-2000:])
        try:
            if httpx.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    sys.exit(f"jupyterhub did not answer within {timeout:.0f} s; see {log}")


def user_token(url: str, service_token: str) -> str:
    """Create the "demo" user (if needed) and an API token for it, through the hub's API."""
    with httpx.Client(base_url=f"{url}/hub/api/", headers={"Authorization": f"token {service_token}"}) as api:
        r = api.post("users/demo")
        if r.status_code not in (201, 409):
            r.raise_for_status()
        r = api.post("users/demo/tokens", json={"note": "demo: shell", "expires_in": 86400})
        r.raise_for_status()
        return str(r.json()["token"])


def check(url: str, token: str) -> None:
    """Make the calls the instructions describe; fail loudly if one does not behave."""
    with httpx.Client(base_url=f"{url}/hub/api/token-cache/", headers={"Authorization": f"token {token}"}) as api:
        first = api.post("notebook", json={}).json()
        again = api.post("notebook", json={}).json()
        internal = api.post("internal", json={"service": "demo-service"})
        stats = api.get("stats").json()
    assert first["cached"] is False and again["cached"] is True and again["id"] == first["id"], "notebook"
    assert internal.status_code == 200 and internal.json()["service"] == "demo-service", internal.text
    assert stats["mints"] == 2 and stats["hits"] == 1, stats
    whoami = whoami_check(url, token)
    print(f"demo check passed: notebook token {first['id']} minted then cached; "
          f"internal token {internal.json()['id']}; stats {stats['mints']} mints, {stats['hits']} hit; "
          f"the whoami service knows the internal token {whoami['token_id']} as {whoami['name']!r}")  # fmt: skip


def whoami_check(url: str, token: str, timeout: float = 30) -> dict[str, str]:
    """Call the example service with an internal token for it, as the instructions say."""
    headers = {"Authorization": f"token {token}"}
    internal = httpx.post(f"{url}/hub/api/token-cache/internal", json={"service": "whoami"},
                          headers=headers).json()["token"]  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:  # the proxy routes to the service moments after the hub is up
        r = httpx.get(f"{url}/services/whoami/", headers={"Authorization": f"token {internal}"})
        if r.status_code == 200:
            return r.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"whoami service: {r.status_code} {r.text[:200]}"
        time.sleep(0.2)


INSTRUCTIONS = """
Demo hub with the token cache: {url}   (log: {log}; Ctrl-C stops it)

In a browser: log in as "demo", password "{password}", start your server, and in a notebook:
    from jupyter_token_cache.client import get_notebook_token, get_internal_token
    get_notebook_token()                  # the one also in $JUPYTERHUB_NOTEBOOK_TOKEN
    get_internal_token("demo-service")    # a delegated token for a service

From a shell (a token for "demo" was written to {token_file}):
    TOKEN=$(cat {token_file})
    curl -s -X POST -H "Authorization: token $TOKEN" {url}/hub/api/token-cache/notebook -d '{{}}'
    curl -s -X POST -H "Authorization: token $TOKEN" {url}/hub/api/token-cache/notebook -d '{{}}'   # "cached": true
    curl -s -X POST -H "Authorization: token $TOKEN" {url}/hub/api/token-cache/internal -d '{{"service": "demo-service"}}'
    curl -s -H "Authorization: token $TOKEN" {url}/hub/api/token-cache/stats                       # demo is an admin

The example service (examples/service/whoami.py) checks tokens with CachedHubAuth:
    INTERNAL=$(curl -s -X POST -H "Authorization: token $TOKEN" {url}/hub/api/token-cache/internal \
        -d '{{"service": "whoami"}}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
    curl -s -H "Authorization: token $INTERNAL" {url}/services/whoami/        # who the token belongs to
    curl -s {url}/services/whoami/stats                                       # one hub call per new token
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="public port (default 8000)")
    parser.add_argument("--dir", default=".demo", help="where the hub keeps its files (default .demo)")
    parser.add_argument("--check", action="store_true", help="make the calls, print the result, stop")
    parser.add_argument("--quiet", action="store_true", help="no progress lines while starting")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    quiet = args.quiet

    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port() if args.check else args.port
    url = f"http://127.0.0.1:{port}"
    service_token, password = secrets.token_hex(16), secrets.token_urlsafe(9)
    progress(f"[1/3] starting jupyterhub on {url} (log: {workdir / 'jupyterhub.log'})", quiet=quiet)
    hub = start_hub(workdir, port, service_token, password)
    try:
        wait_ready(url, hub, workdir / "jupyterhub.log", quiet=quiet)
        progress('[2/3] jupyterhub is up; creating the user "demo" and a token for it', quiet=quiet)
        token = user_token(url, service_token)
        if args.check:
            progress("[3/3] calling the token-cache API", quiet=quiet)
            check(url, token)
            return
        token_file = workdir / "demo-token"
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n")
        progress("[3/3] ready", quiet=quiet)
        print(INSTRUCTIONS.format(url=url, log=workdir / "jupyterhub.log", password=password,
                                  token_file=token_file), flush=True)  # fmt: skip
        hub.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut this short
        if hub.poll() is None:
            progress("stopping jupyterhub (and with it the proxy)", quiet=quiet)
            hub.send_signal(signal.SIGINT)
            try:
                hub.wait(30)
            except subprocess.TimeoutExpired:
                hub.kill()


if __name__ == "__main__":
    main()
