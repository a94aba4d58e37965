"""Every page of the documentation, run as an operator follows it (tests/docs/pages.py).

One test per page: its blocks in page order, its configuration composed as pasted and a
hub started with it, its commands run, its answers compared. ``./run docs`` runs this
module before building, so a broken example fails the docs build too. With
``DOCS_TEST_REPORT=FILE`` each page adds a line to FILE: how many blocks ran, and each
block that cannot run here with its reason.

What the pages name that exists only on an operator's machine is replaced here
(``substitutions``): Redis at 127.0.0.1:6379 (or ``redis:6379``, or Sentinel and
Cluster at 10.0.0.x) and memcached at 127.0.0.1:11211 by this test's servers; the hub
at 127.0.0.1:8081 / 8000 by the page's own hub (MockHub: no proxy, so the public URL is
the hub's); ``/etc/jupyterhub/`` by the page's scratch directory; ``/path/to/`` by this
repository; the ports 10101 and 10102 of the examples' services by free ones. The
environment holds what an operator exports first (``JUPYTERHUB_CRYPT_KEY``, the tokens
and keys the pages read from ``os.environ``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import os
import re
import secrets
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jupyterhub import orm, roles
from jupyterhub.tests.mocking import MockHub
from traitlets.config import Config

from jupyter_token_cache.cache import close_all
from jupyter_token_cache.cli.config import check_config

from ..hub.memory_proxy import MemoryProxy
from ..servers import RedisServer, free_port
from .pages import ROOT, PageRun

PAGES = [
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts),
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
]


class PageHub:
    """A MockHub started with a page's configuration, on an event loop of its own in a
    thread of its own: stopping a hub cancels every task of its loop, and the page's
    blocks talk to it from the test's thread as an operator's tools would."""

    def __init__(self, config: Config) -> None:
        config.JupyterHub.proxy_class = MemoryProxy
        config.JupyterHub.cookie_secret = secrets.token_bytes(32)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        forget_custom_scopes()
        MockHub.clear_instance()
        self.app = MockHub.instance(config=config)
        try:
            self.call(self.app.initialize([]))
            self.call(self.app.start())
        except BaseException:
            self.stop()
            raise
        self.url = self.app.hub.url  # http://127.0.0.1:PORT/@/space%20word/hub/

    def call(self, coroutine: Any) -> Any:
        """Run ``coroutine`` on the hub's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)

    def user_token(self, name: str, scopes: list[str] | None = None) -> str:
        async def make() -> str:
            user = orm.User.find(self.app.db, name)
            if user is None:
                user = orm.User(name=name)
                self.app.db.add(user)
                self.app.db.commit()
                roles.assign_default_roles(self.app.db, entity=user)
                self.app.db.commit()
            return self.app.users[user].new_api_token(scopes=scopes, note="docs test")  # type: ignore[no-any-return]

        return self.call(make())  # type: ignore[no-any-return]

    def service_token(self, name: str) -> str:
        return self.app._service_map[name].api_token  # type: ignore[no-any-return]

    def stop(self) -> None:
        async def stop() -> None:
            events = getattr(self.app.authenticator, "token_events", None)
            if events is not None:
                events.close()
            await close_all()
            stopped = self.app.stop()
            if inspect.isawaitable(stopped):
                await stopped

        try:
            if hasattr(self.app, "db"):  # it got as far as initializing
                self.call(stop())
        except (asyncio.CancelledError, concurrent.futures.CancelledError):
            pass  # the hub's stop cancels the tasks of its loop, its own caller's too
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
            MockHub.clear_instance()


def forget_custom_scopes() -> None:
    """Forget the custom scopes earlier pages' hubs defined: JupyterHub keeps them in a
    module-level table, and two pages may describe one scope in different words (each
    page is the operator's one file, not a sum of every page)."""
    from jupyterhub.scopes import scope_definitions

    for name in [name for name in scope_definitions if name.startswith("custom:")]:
        del scope_definitions[name]


def checked(path: Path, **options: Any) -> list[Any]:
    """check-config's problems with the composed file, as for a file of its own."""
    forget_custom_scopes()
    return check_config(path, **options)


def internal_token(hub: PageHub, service: str) -> str:
    token = hub.user_token("alice")
    r = httpx.post(
        f"{hub.url}api/token-cache/internal",
        json={"service": service},
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["token"]  # type: ignore[no-any-return]


def introspection(hub: PageHub) -> Any:
    """services.md: the hub's introspection answer for alice's internal token for whoami."""
    r = httpx.post(
        f"{hub.url}api/token-cache/introspect",
        json={"token": internal_token(hub, "whoami")},
        headers={"Authorization": f"token {hub.service_token('whoami')}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def whoami(hub: PageHub) -> Any:
    """services.md: what the whoami service answers a notebook's internal token with, the
    model its CachedHubAuth hands its handler."""
    from jupyter_token_cache.services import CachedHubAuth

    token = internal_token(hub, "whoami")
    auth = CachedHubAuth(api_url=hub.url + "api", api_token=hub.service_token("whoami"))
    try:
        return auth.user_for_token(token)
    finally:
        auth.close_token_checks()


ANSWERS: dict[str, Callable[[PageHub], Any]] = {"introspection": introspection, "whoami": whoami}


@pytest.fixture
def warnings_logged() -> Iterator[list[logging.LogRecord]]:
    """The warnings logged while the test runs (the hubs' start-up warnings among them)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                records.append(record)

    handler = Keep()
    logging.getLogger().addHandler(handler)
    yield records
    logging.getLogger().removeHandler(handler)


def substitutions(
    page: Path, request: pytest.FixtureRequest, scratch: Path, env: dict[str, str]
) -> Callable[[PageRun | None, str], str]:
    """What the page names on the operator's machine -> this machine's equivalent."""
    text = page.read_text()
    fixed: list[tuple[str, str]] = [
        ("/etc/jupyterhub/", f"{scratch}/etc/jupyterhub/"),
        ("/path/to/", f"{ROOT}/"),
        ("127.0.0.1:10101", f"127.0.0.1:{free_port()}"),
        ("127.0.0.1:10102", f"127.0.0.1:{free_port()}"),
    ]
    if re.search(r"redis://(127\.0\.0\.1|redis):6379|redis-cli", text):
        if "TOKEN_CACHE_REDIS_PASSWORD" in text:  # a Redis with a password, as that page's
            server = request.getfixturevalue("password_redis")
            env["REDISCLI_AUTH"] = env["TOKEN_CACHE_REDIS_PASSWORD"] = server.password
        else:
            server = request.getfixturevalue("redis_server")
        for named in ("redis://127.0.0.1:6379", "redis://redis:6379"):
            fixed.append((named, f"redis://127.0.0.1:{server.port}"))
        fixed.append(("redis-cli ", f"redis-cli -p {server.port} "))
    if "redis+sentinel://10.0.0.1" in text:
        sentinels = request.getfixturevalue("redis_sentinel")
        fixed.append(
            (
                "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/tokencache/0",
                sentinels.url,
            )
        )
    if "redis+cluster://10.0.0.1" in text:
        cluster = request.getfixturevalue("redis_cluster")
        fixed.append(("redis+cluster://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379", cluster.url))
    if "memcached://127.0.0.1:11211" in text:
        memcached = request.getfixturevalue("memcached_server")
        fixed.append(("memcached://127.0.0.1:11211", memcached.url))

    def substitute(run: PageRun | None, source: str) -> str:
        for named, here in fixed:
            source = source.replace(named, here)
        if run is not None and run.hub is not None:
            hub = run.hub.url  # .../hub/
            for named in ("http://127.0.0.1:8081/hub/", "http://127.0.0.1:8000/hub/"):
                source = source.replace(named, hub)
        return source

    return substitute


@pytest.fixture(scope="session")
def password_redis() -> Iterator[RedisServer]:
    """A Redis that needs a password, as docs/backends.md's does."""

    class PasswordRedis(RedisServer):
        password = secrets.token_hex(16)

        def command(self) -> list[str]:
            return [*super().command(), "--requirepass", self.password]

    from ..conftest import running

    yield from running(PasswordRedis)


def operator_env(scratch: Path) -> dict[str, str]:
    """The environment an operator starts from: this interpreter's tools first on PATH,
    the hub's key, and the secrets the pages read from the environment."""
    bindir = str(Path(sys.executable).parent)
    keep = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    return {
        **keep,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(scratch),
        "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
        "TOKEN_CACHE_ADMIN_TOKEN": secrets.token_hex(16),
        "FOLLOWER_TOKEN": secrets.token_hex(16),
        "ANSWERS_KEY": secrets.token_hex(32),
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page(
    page: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    warnings_logged: list[logging.LogRecord],
) -> None:
    scratch = tmp_path / "operator"
    scratch.mkdir()
    monkeypatch.chdir(scratch)  # where relative paths of the pages' configuration land
    env = operator_env(scratch)
    for name in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_CRYPT_KEY"):
        monkeypatch.delenv(name, raising=False)
    substitute = substitutions(page, request, scratch, env)
    run = PageRun(
        page,
        scratch=scratch,
        env=env,
        substitutions=lambda source: substitute(run, source),
        hub_starter=PageHub,
        answers=ANSWERS,
    )
    saved = dict(os.environ)  # the page's code blocks run with the operator's environment
    try:
        for example in run.examples():
            run.run(example)
        started = run.finish_compositions(checked)
    finally:
        run.stop_hub()
        os.environ.clear()
        os.environ.update(saved)
    problems = [
        f"the blocks at lines {composition.lines}: {problem}"
        for composition, found in started
        for problem in found
    ]
    assert not problems, f"check-config on {page.name}'s configuration:\n" + "\n".join(problems)
    warned = [
        r.getMessage()
        for r in warnings_logged
        if re.match(r"(TokenCache|JupyterHub)\.\w+", r.getMessage())
        or "not recognized" in r.getMessage()
    ]
    assert not warned, f"the hub warned at start with {page.name}'s configuration: {warned}"
    report(run)


def report(run: PageRun) -> None:
    """Add the page's line to $DOCS_TEST_REPORT, if set."""
    where = os.environ.get("DOCS_TEST_REPORT")
    if not where:
        return
    line = {
        "page": str(run.path.relative_to(ROOT)),
        "ran": sum(1 for o in run.outcomes if o.ran),
        "by_kind": {
            kind: sum(1 for o in run.outcomes if o.ran == kind)
            for kind in ("configuration", "code", "shell", "answer")
        },
        "hubs": len(run.started),
        "not_runnable": [
            {"line": o.line, "language": o.language, "why": o.reason}
            for o in run.outcomes
            if o.reason
        ],
    }
    with open(where, "a") as f:
        f.write(json.dumps(line) + "\n")
