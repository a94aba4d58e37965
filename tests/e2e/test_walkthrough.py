"""The quick start, walked through as a new operator does: the package as installed (from
the wheel, when ``./run package`` runs this in its fresh virtual environment), the quick
start's ``jupyterhub_config.py`` exactly as the page composes it, the real ``jupyterhub``
command with configurable-http-proxy, a login in Debian's chromium, a real single-user
JupyterLab server, and the page's notebook calls run in a real kernel of that server:
every call must answer as the page shows.

Two things differ from an operator's machine, and only these: the page's Redis
(127.0.0.1:6379) is this test's, and its authenticator ("github", which needs GitHub) is
JupyterHub's "dummy" with a password, so that chromium can log in here. The spawner
settings below are this machine's (servers run as the hub's user), not the page's.
"""

from __future__ import annotations

import asyncio
import doctest
import json
import os
import secrets
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..browser.admin import CHROMIUM, CHROMIUM_ARGS
from ..docs.pages import ROOT, for_this_jupyterhub, page_config
from ..hubprocess import HubProcess, running_hub
from ..servers import MissingBinary, RedisServer, unavailable
from .services import api_token

pytestmark = pytest.mark.e2e

QUICKSTART = ROOT / "docs" / "quickstart.md"
INSTALL = ROOT / "docs" / "install.md"
PASSWORD = secrets.token_hex(8)
#: This machine's spawner: JupyterLab servers run as the hub's user, homes in the workdir.
SPAWNER = """
import os
c.JupyterHub.spawner_class = "simple"
c.Spawner.cmd = ["{singleuser}"]
c.Spawner.default_url = "/lab"
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.SimpleLocalProcessSpawner.home_dir_template = "{workdir}/home/{{username}}"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.DummyAuthenticator.password = "{password}"
c.Authenticator.allow_all = True
"""


def quickstart_config(redis: RedisServer) -> str:
    """The quick start's configuration as the page composes it, with this machine's Redis
    and a login chromium can do."""
    config = page_config(QUICKSTART)
    assert 'with_token_cache("github")' in config and "redis://127.0.0.1:6379/0" in config
    return config.replace('with_token_cache("github")', 'with_token_cache("dummy")').replace(
        "redis://127.0.0.1:6379", f"redis://127.0.0.1:{redis.port}"
    )


def notebook_examples() -> list[doctest.Example]:
    """The page's notebook calls (its ``>>>`` block), with the answers it shows."""
    text = QUICKSTART.read_text()
    start = text.index(">>> import os")
    block = text[start : text.index("```", start)]
    return doctest.DocTestParser().get_examples(block)


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("walkthrough")
    singleuser = Path(sys.executable).with_name("jupyterhub-singleuser")
    config = for_this_jupyterhub(quickstart_config(redis_server)) + SPAWNER.format(
        workdir=workdir, password=PASSWORD, singleuser=singleuser
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTERHUB_CRYPT_KEY", secrets.token_hex(32))  # what the page says to set
        with running_hub(workdir, config) as hub:
            yield hub


def test_the_version_check_of_the_install_page_names_the_installed_package() -> None:
    """install.md's check, run from the clone's root: the installed package, not the source
    tree there (``-I``). From ./run package, the wheel's, in the fresh environment."""
    clone = Path(os.environ.get("WALKTHROUGH_CLONE", ROOT))
    text = INSTALL.read_text()
    command = text[text.index("$ python -I -c") + 2 :].split("\n", 1)[0]
    done = subprocess.run(  # noqa: S602 - the page's own command line
        command.replace("python", sys.executable, 1),
        shell=True,
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    version, where = done.stdout.split()
    import jupyter_token_cache

    assert version == jupyter_token_cache.__version__
    if "WALKTHROUGH_CLONE" in os.environ:  # a wheel: site-packages, whatever the directory
        site = Path(sysconfig.get_paths()["purelib"]).resolve()
        assert Path(where).resolve().is_relative_to(site), where
        # without -I, Python would have imported the source tree of the clone instead
        plain = subprocess.run(
            [sys.executable, "-c", "import jupyter_token_cache as p; print(p.__file__)"],
            cwd=clone,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert Path(plain.stdout.strip()).resolve().is_relative_to(clone.resolve())


def test_log_in_with_chromium_start_jupyterlab_and_run_the_notebook_calls(hub: HubProcess) -> None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        unavailable(MissingBinary(f"{CHROMIUM} not found (apt-get install chromium)"))
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{hub.url}/hub/login")
            page.get_by_label("Username:", exact=True).fill("alice")
            page.get_by_label("Password:", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            # the hub spawns her server on login and sends her on to JupyterLab
            page.wait_for_url(f"{hub.url}/user/alice/lab**", timeout=180_000)
            expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=120_000)
        finally:
            browser.close()

    token = api_token(hub, "alice")["token"]
    answers = asyncio.run(run_in_a_kernel(hub, token, notebook_examples()))
    wrong = [
        f">>> {example.source.strip()}\n  page: {example.want.strip()}\n  kernel: {got}"
        for example, got in answers
        if got.split() != example.want.split()  # IPython wraps a long answer: layout aside
    ]
    assert not wrong, "the notebook calls answer otherwise than the page says:\n" + "\n".join(wrong)


async def run_in_a_kernel(
    hub: HubProcess, token: str, examples: list[doctest.Example]
) -> list[tuple[doctest.Example, str]]:
    """Start a kernel in alice's JupyterLab server (its REST API) and run each example in
    it over the kernel's websocket, as a notebook cell runs: what each one displays."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    base = f"{hub.url}/user/alice/api"
    auth = {"Authorization": f"token {token}"}
    r = httpx.post(f"{base}/kernels", json={"name": "python3"}, headers=auth, timeout=60)
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    session = uuid.uuid4().hex
    url = f"{base}/kernels/{kernel}/channels?session_id={session}".replace("http", "ws", 1)
    socket = await websocket_connect(HTTPRequest(url, headers=auth), max_message_size=1 << 24)
    answers = []
    try:
        for example in examples:
            answers.append((example, await execute(socket, session, example.source)))
    finally:
        socket.close()
        httpx.delete(f"{base}/kernels/{kernel}", headers=auth, timeout=60)
    return answers


async def execute(socket: Any, session: str, code: str) -> str:
    """One execute_request; the text it displays (result, output or error)."""
    msg_id = uuid.uuid4().hex
    socket.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "alice",
                    "session": session,
                    "date": "",
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    shown: list[str] = []
    while True:
        raw = await asyncio.wait_for(socket.read_message(), 120)
        assert raw is not None, "the kernel's websocket closed"
        message = json.loads(raw)
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "execute_result":
            shown.append(content["data"]["text/plain"])
        elif kind == "stream":
            shown.append(content["text"].rstrip("\n"))
        elif kind == "error":
            shown.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "\n".join(shown)
