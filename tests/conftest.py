"""Fixtures shared by every test: real servers, and TokenCache instances over each backend.

A test that needs a server whose program is missing fails under CI (CI=true) and skips,
with the reason shown, on a developer's machine.

``./run test`` runs the suite on two pytest-xdist workers, then the ``serial`` tests alone:
SERIAL below says which tests run alone, SHARED which files share a worker.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
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
    RedisClusterSet,
    RedisServer,
    SentinelSet,
    Server,
    unavailable,
)

BACKENDS = ["memory", "redis", "memcached"]
SHARED_BACKENDS = ["redis", "memcached"]
#: The cache engine's behaviour tests also run on Redis Sentinel and Redis Cluster: the
#: backend is "redis" there, the URL picks the topology.
REPLICATED_REDIS = ["redis-sentinel", "redis-cluster"]
CACHE_BACKENDS = BACKENDS + REPLICATED_REDIS
SHARED_CACHE_BACKENDS = SHARED_BACKENDS + REPLICATED_REDIS
_namespaces = itertools.count()

# A shell runs a command started in the background (``./run test &``, ``nohup``) with
# SIGINT and SIGQUIT ignored, and every process started from it inherits that: the
# single-user servers the hubs spawn would then ignore the SIGINT that stops them, and each
# stop would wait out the spawner's interrupt timeout (tests/hub failed so, "server did
# not stop"). Signals ignored here are not ignored by what the tests start.
for _signal, _handler in (
    (signal.SIGINT, signal.default_int_handler),
    (signal.SIGQUIT, signal.SIG_DFL),
):
    if signal.getsignal(_signal) == signal.SIG_IGN:
        with contextlib.suppress(ValueError):  # not the main thread: nothing to restore
            signal.signal(_signal, _handler)


#: The tests that run alone (marked ``serial``; ``./run test`` runs them after the parallel
#: part, with no other worker beside them): they assert time bounds, concurrency figures (one mint
#: for N callers) or recovery after a fault under load, and a second worker's load beside
#: them makes them flaky. One list rather than a mark in each module: what runs alone, and
#: why, reads in one place, and a node id prefix can name a whole module or one test of it.
SERIAL = (
    # storms, races, fault injection and failover under load
    "tests/hub/test_storm.py",
    "tests/hub/test_races.py",
    "tests/hub/test_faults.py",  # p99 and recovery bounds
    "tests/hub/test_redis_failover.py",  # back within 5 s of the promotion
    "tests/cache/test_redis_failover.py",
    "tests/e2e/test_service_cuts.py",  # a frozen or killed hub under the services
    "tests/serve/test_stream_cut.py",  # refused within 1 s
    "tests/serve/test_replicas.py",  # 1,000 concurrent requests, one mint; 10,000 hits
    # concurrency figures: N concurrent callers, one creation / one upstream call
    "tests/cache/test_single_flight.py",  # and time bounds, across processes
    "tests/hub/test_exchange.py::test_a_thousand_concurrent_exchanges",
    "tests/hub/test_cached_hub_auth.py::test_one_hub_call_per_new_token_however_many_ask",
    "tests/hub/test_notebook_tokens.py::test_hundred_concurrent_requests_mint_once",
    "tests/upstream/test_answers.py::test_concurrent_checks_of_one_token_ask_once",
    "tests/upstream/test_service.py",  # one refresh for 100, one provider call for 1,000
    "tests/e2e/test_services.py",  # 1,000 concurrent checks, one hub call; refused within 1 s
    # latency and time bounds
    "tests/cache/test_fail_open.py",
    "tests/cache/test_deadlines.py",
    "tests/cache/test_redis_notifications.py::test_clear_elsewhere_is_seen_through_its_notice",
    "tests/upstream/test_answers.py::test_a_hanging_authority_is_unavailable_within",
    "tests/hub/test_exchange.py::test_provider_killed_or_stopped_fails_closed_then_recovers",
    "tests/upstream/test_service_faults.py",  # 503 within the timeout, recovery
    "tests/e2e/test_upstream_tokens.py",  # one refresh for 100 at expiry; 503 within the timeout
    "tests/hub/test_cached_hub_auth.py::test_a_deleted_token_is_refused_within_a_second",
    "tests/e2e/test_service_revocation.py",  # every way a token ends, refused within 1 s
    "tests/restarts/test_storm.py",  # 2,000 operations at concurrency 10, with restarts
    "tests/e2e/test_service_loop.py",  # a cached token answered within 50 ms, hub frozen
)

#: ``./run test`` hands the parallel part out a test file at a time (``--dist loadfile``):
#: a file's tests run on one worker, in order, so a module-scoped fixture (a hub, a
#: browser) starts once and tests that build on each other (tests/browser) stay in order.
#: Files that must share a worker as well, each prefix with the unit it joins: the Binder
#: tour and the demo test both start a whole demo hub (jupyterhub, the proxy, the whoami
#: service, a kernel or JupyterLab) and failed when they ran at the same time; tests/serve
#: shares one hub and its replicas for the package (tests/serve/conftest.py ``setup``).
#: (``xdist_group`` marks with ``--dist loadgroup`` would be the usual way, but
#: pytest-xdist 3.8 on pytest 9.2 ignores them: pytest-dev/pytest-xdist#1386.)
SHARED = {
    "tests/e2e/test_binder_tour.py": "the demo hub",
    "tests/e2e/test_demo.py": "the demo hub",
    "tests/serve/": "tests/serve/",
}


def _check_listed(root: Path) -> None:
    """Every entry of SERIAL and SHARED names a file (and a test) that exists: a renamed
    test would otherwise quietly lose its place."""
    for entry in (*SERIAL, *SHARED):
        path, _, name = entry.partition("::")
        if not (root / path).exists() or (name and f"def {name}" not in (root / path).read_text()):
            raise pytest.UsageError(f"tests/conftest.py names {entry!r}, which does not exist")


def work_unit(nodeid: str) -> str:
    """What a test is handed out with under ``--dist loadfile``: its file, or a SHARED unit."""
    path = nodeid.split("::", 1)[0]
    return next((unit for prefix, unit in SHARED.items() if path.startswith(prefix)), path)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: only called with -n
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with the SHARED files joined into one unit each."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFileScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return SharedFileScheduling(config, log)


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the SERIAL tests ``serial``."""
    _check_listed(config.rootpath)
    serial = re.compile("|".join(re.escape(entry) for entry in SERIAL))
    for item in items:
        if serial.match(item.nodeid):
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session")
def crypt_key() -> str:
    return Fernet.generate_key().decode()


def running(kind: type[Server] | type[SentinelSet] | type[RedisClusterSet]) -> Iterator[Any]:
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
def redis_sentinel() -> Iterator[SentinelSet]:
    """1 master, 1 replica and 3 sentinels for the session (tests that kill a master take
    their own ``own_redis_sentinel``)."""
    yield from running(SentinelSet)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterSet]:
    """3 masters and 3 replicas for the session."""
    yield from running(RedisClusterSet)


@pytest.fixture
def own_redis_sentinel() -> Iterator[SentinelSet]:
    yield from running(SentinelSet)


@pytest.fixture
def own_redis_cluster() -> Iterator[RedisClusterSet]:
    yield from running(RedisClusterSet)


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
    elif backend in REPLICATED_REDIS:
        server = request.getfixturevalue(backend.replace("-", "_"))
        settings.update(backend="redis", url=server.url, encryption_key=key)
    return settings


@pytest.fixture(params=CACHE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def make_cache(
    backend: str, request: pytest.FixtureRequest, crypt_key: str
) -> AsyncIterator[Callable[..., TokenCache]]:
    """Build TokenCache instances on the parametrized backend; all closed afterwards.

    A backend call may take 5 s here, not the 0.5 s default: on two busy cores (two
    pytest-xdist workers) a call can take longer than that, and the cache then fails
    open as designed, which a test of what the cache keeps would read as a lost entry.
    Tests of timeouts and failing open set their own.
    """
    base = {"operation_timeout": 5.0, **settings_for(backend, request, crypt_key)}

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
