"""Fixtures shared by every test: real servers, and TokenCache instances over each backend.

A test that needs a server whose program is missing fails under CI (CI=true) and skips,
with the reason shown, on a developer's machine.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache import close_all

from .oidc.server import OIDCProvider
from .servers import (
    MemcachedServer,
    MissingBinary,
    PostgresServer,
    RedisServer,
    Server,
    unavailable,
)

BACKENDS = ["memory", "redis", "memcached"]
SHARED_BACKENDS = ["redis", "memcached"]
_namespaces = itertools.count()


@pytest.fixture(scope="session")
def crypt_key() -> str:
    return Fernet.generate_key().decode()


def running(kind: type[Server]) -> Iterator[Server]:
    try:
        server = kind().start()
    except MissingBinary as e:
        unavailable(e)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from running(RedisServer)


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    yield from running(MemcachedServer)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the session; tests take databases from it."""
    yield from running(PostgresServer)


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OIDCProvider]:
    """A real OpenID Connect provider (oidc-provider on node) for the token exchange."""
    yield from running(OIDCProvider)


@pytest.fixture
def own_oidc_provider() -> Iterator[OIDCProvider]:
    """A provider of this test's own, for tests that kill, pause or restart it."""
    yield from running(OIDCProvider)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of this test's own, for tests that kill, pause or restart it."""
    yield from running(RedisServer)


@pytest.fixture
def own_memcached() -> Iterator[MemcachedServer]:
    yield from running(MemcachedServer)


def settings_for(backend: str, request: pytest.FixtureRequest, key: str) -> dict[str, Any]:
    """TokenCache settings for ``backend`` with a namespace no other test uses."""
    settings: dict[str, Any] = {"backend": backend, "namespace": f"t{next(_namespaces)}"}
    if backend == "redis":
        settings.update(url=request.getfixturevalue("redis_server").url, encryption_key=key)
    elif backend == "memcached":
        settings.update(url=request.getfixturevalue("memcached_server").url, encryption_key=key)
    return settings


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def make_cache(
    backend: str, request: pytest.FixtureRequest, crypt_key: str
) -> AsyncIterator[Callable[..., TokenCache]]:
    """Build TokenCache instances on the parametrized backend; all closed afterwards."""
    base = settings_for(backend, request, crypt_key)

    def make(**overrides: Any) -> TokenCache:
        return TokenCache(**{**base, **overrides})

    yield make
    await close_all()


@pytest.fixture
async def cache(make_cache: Callable[..., TokenCache]) -> TokenCache:
    return make_cache()


@pytest.fixture(autouse=True)
def _quiet_asyncio_debug() -> None:
    logging.getLogger("asyncio").setLevel(logging.WARNING)
