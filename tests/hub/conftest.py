"""A real JupyterHub (MockHub) with the token cache, and HTTP helpers to talk to it."""

from __future__ import annotations

import inspect
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from jupyterhub import orm, roles
from jupyterhub.tests.mocking import MockHub, MockPAMAuthenticator
from traitlets.config import Config

from jupyter_token_cache import with_token_cache
from jupyter_token_cache.cache import close_all
from jupyter_token_cache.services import CachedHubAuth

from ..conftest import BACKENDS, settings_for
from ..servers import MemcachedServer, RedisServer, Server
from .memory_proxy import MemoryProxy
from .openapi import check_response

#: The hub's database: MockHub's temporary SQLite file, or a fresh PostgreSQL database.
HUB_DATABASES = ["sqlite", "postgresql"]

SERVICES = {
    "dask": {"scopes": ["access:services!service=dask", "read:users!user"], "lifetime": 3600},
    "short": {"scopes": ["read:users!user"], "lifetime": 120},
}


class Hub:
    """A running MockHub and what tests need from it: users, tokens, HTTP."""

    def __init__(self, app: MockHub) -> None:
        self.app = app
        self.url = app.hub.url  # direct to the hub: the memory proxy serves nothing
        #: Every token a test made or was handed: none may appear in a log or the backend.
        self.secrets: set[str] = set()
        self.hooks = {"response": [check_response, self._remember]}
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30, event_hooks=self.hooks)

    async def _remember(self, response: httpx.Response) -> None:
        await response.aread()
        if response.status_code == 200 and "/api/token-cache/" in response.request.url.path:
            body = response.json()
            token = body.get("token") if isinstance(body, dict) else None
            if token:
                self.secrets.add(token)

    @property
    def db(self) -> Any:
        return self.app.db

    def add_user(self, name: str, *, admin: bool = False, roles_: list[str] | None = None) -> Any:
        orm_user = orm.User.find(self.db, name)
        if orm_user is None:
            orm_user = orm.User(name=name, admin=admin)
            self.db.add(orm_user)
            self.db.commit()
            roles.assign_default_roles(self.db, entity=orm_user)
        for role in roles_ or []:
            roles.grant_role(self.db, orm_user, role)
        self.db.commit()
        return self.app.users[orm_user]

    def token(self, name: str, *, scopes: list[str] | None = None, expires_in: int | None = None,
              admin: bool = False) -> str:  # fmt: skip
        """A user API token (default: the hub's default token scopes)."""
        user = self.add_user(name, admin=admin)
        token = user.new_api_token(scopes=scopes, expires_in=expires_in, note="test token")
        self.secrets.add(token)
        return token

    async def post(
        self, route: str, token: str | None = None, body: Any = None, **kwargs: Any
    ) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"token {token}"
        content = body if isinstance(body, (bytes, str)) else None
        return await self.http.post(f"api/token-cache/{route}", headers=headers, content=content,
                                    json=None if content is not None else body, **kwargs)  # fmt: skip

    async def api(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        """A call to any hub API route, e.g. ``api("DELETE", "users/x/tokens/a1", t)``."""
        return await self.http.request(
            method, f"api/{path}", headers={"Authorization": f"token {token}"}, **kwargs
        )

    def token_rows(self, name: str) -> list[Any]:
        self.db.expire_all()
        return list(self.db.query(orm.APIToken).join(orm.User).filter(orm.User.name == name))

    def minted_rows(self, name: str) -> list[Any]:
        return [
            row
            for row in self.token_rows(name)
            if (row.note or "").startswith("jupyter-token-cache")
        ]

    async def login(self, name: str) -> httpx.AsyncClient:
        """A browser-like client logged in as ``name`` (cookies, XSRF header set)."""
        client = httpx.AsyncClient(base_url=self.url, timeout=30, event_hooks=self.hooks)
        r = await client.get("login")
        xsrf = client.cookies.get("_xsrf") or re.search(
            r'name="_xsrf" value="([^"]+)"', r.text
        ).group(1)
        r = await client.post("login", params={"_xsrf": xsrf}, data={"username": name, "password": name,
                                                                       "_xsrf": xsrf})  # fmt: skip
        assert r.status_code == 302, r.text
        r = await client.get("home")
        client.headers["X-XSRFToken"] = client.cookies.get("_xsrf")
        client.headers["Sec-Fetch-Mode"] = "cors"
        return client


def message(record: logging.LogRecord) -> str:
    """A record's text, or its format string when its arguments can no longer be
    formatted (the repr of a token row deleted since is looked up lazily)."""
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001
        return str(record.msg)


@pytest.fixture
def hub_config(request: pytest.FixtureRequest) -> Config:
    """Config for the hub fixture; tests change it with @pytest.mark.hub_config(...)."""
    config = Config()
    config.JupyterHub.authenticator_class = with_token_cache(MockPAMAuthenticator)
    config.JupyterHub.proxy_class = MemoryProxy
    config.JupyterHub.custom_scopes = {
        "custom:token-cache:admin": {"description": "Administer the token cache"},
        "custom:token-cache:events": {"description": "Follow token lifecycle events"},
        "custom:token-cache:introspect": {"description": "Introspect tokens"},
    }
    config.TokenCache.services = SERVICES
    # every hub of the test session runs in this process: freezing its objects would keep
    # each test's hub alive for good (test_startup_warnings.py tests the setting)
    config.TokenCache.freeze_gc = False
    # a secret of its own, not ./jupyterhub_cookie_secret: every hub of every pytest-xdist
    # worker would share that file, and one that reads it while another creates it (not
    # yet chmod 600) refuses to start
    config.JupyterHub.cookie_secret = secrets.token_bytes(32)
    marker = request.node.get_closest_marker("hub_config")
    if marker:
        for dotted, value in marker.kwargs.items():
            section, _, name = dotted.partition("__")
            setattr(config[section], name, value)
    return config


@pytest.fixture(params=BACKENDS)
def any_backend_config(
    request: pytest.FixtureRequest, hub_config: Config, crypt_key: str
) -> Config:
    """hub_config on each backend in turn; a module opts in with ``hub_config = any_backend_config``."""
    for name, value in settings_for(request.param, request, crypt_key).items():
        setattr(hub_config.TokenCache, name, value)
    return hub_config


def servers_in_use(request: pytest.FixtureRequest) -> list[Server]:
    """The Redis and memcached servers this test's hub may have written to, if still up.

    Not the PostgreSQL server: it holds the hub's own tables, not the token cache.
    """
    found = []
    for name in ("redis_server", "memcached_server", "own_redis", "own_memcached", "server"):
        if name in request.fixturenames:
            server = request.getfixturevalue(name)
            if isinstance(server, (RedisServer, MemcachedServer)) and server.process is not None \
                    and server.process.poll() is None:  # fmt: skip
                found.append(server)
    return found


@pytest.fixture(params=HUB_DATABASES)
def hub_db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The hub's database, for every hub test in turn: SQLite, then PostgreSQL.

    MockHub takes no db_url from config: it reads JUPYTERHUB_TEST_DB_URL in ``initialize``
    and falls back to a temporary SQLite file.
    """
    if request.param == "sqlite":
        monkeypatch.delenv("JUPYTERHUB_TEST_DB_URL", raising=False)
        yield "sqlite"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    monkeypatch.setenv("JUPYTERHUB_TEST_DB_URL", url)
    yield url
    server.drop_database(url)  # after the hub (which uses this fixture) has stopped


async def start_hub(config: Config) -> MockHub:
    """A MockHub, initialized and started in the running event loop."""
    MockHub.clear_instance()
    app = MockHub.instance(config=config)
    await app.initialize([])
    await app.start()
    return app


async def stop_hub(app: MockHub) -> None:
    """Stop a hub of :func:`start_hub`, and close the caches it used."""
    # end the event streams and close the caches first: stopping the hub schedules
    # the cancellation of every other task on the loop, this teardown included
    events = getattr(app.authenticator, "token_events", None)
    if events is not None:
        events.close()
    await close_all()
    stopped = app.stop()  # a coroutine since JupyterHub 6; 5.x cleans up in a thread
    if inspect.isawaitable(stopped):
        await stopped
    MockHub.clear_instance()


@pytest.fixture
async def hub(hub_config: Config, hub_db: str, request: pytest.FixtureRequest,
              caplog: pytest.LogCaptureFixture) -> AsyncIterator[Hub]:  # fmt: skip
    """A MockHub started in this test's event loop, stopped (and its caches closed) afterwards.

    It runs on each of HUB_DATABASES in turn (``hub_db``).

    Afterwards, no token the test made or was handed may appear in any log record (all
    levels) or in any key or value on the Redis or memcached server it used.
    """
    caplog.set_level(logging.DEBUG)
    hub = Hub(await start_hub(hub_config))
    try:
        yield hub
    finally:
        await hub.http.aclose()
        await stop_hub(hub.app)
    records = [r for phase in ("setup", "call", "teardown") for r in caplog.get_records(phase)]
    logged = "\n".join(map(message, records))
    assert not [s for s in hub.secrets if s in logged], "a token appeared in a log record"
    for server in servers_in_use(request):
        for name, value in server.dump().items():
            assert not [s for s in hub.secrets if s in name or s.encode() in value], (
                f"plaintext token on {server.binary}"
            )


@pytest.fixture
def extension(hub: Hub) -> Any:
    """The authenticator, which carries the token cache."""
    return hub.app.authenticator


UseHub = Callable[..., Any]


#: A service that checks tokens with CachedHubAuth (the ``auth`` fixture): modules that use
#: it mark their hub with ``pytest.mark.hub_config(**CHECKER, ...)``.
CHECKER_TOKEN = "checker-secret-token-0123456789abcdef"
CHECKER = {
    "JupyterHub__services": [{"name": "checker", "api_token": CHECKER_TOKEN}],
    "JupyterHub__load_roles": [
        {
            "name": "checker",
            "scopes": ["custom:token-cache:introspect", "custom:token-cache:events"],
            "services": ["checker"],
        }
    ],
}


@pytest.fixture
async def auth(hub: Hub) -> AsyncIterator[CachedHubAuth]:
    """CachedHubAuth as the checker service, started (a cut is noticed after 2 s)."""
    hub.secrets.add(CHECKER_TOKEN)
    CachedHubAuth.clear_instance()
    auth = CachedHubAuth(api_url=f"{hub.url}api", api_token=CHECKER_TOKEN, stream_timeout=2)
    await auth.start()
    yield auth
    auth.close_token_checks()
    for checker in auth._token_checkers.values():
        await checker.close()
