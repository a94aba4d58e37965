"""CacheEngine: the configurable front of the cache — settings, shared stores, get/set/get_or_create."""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from aiocache import AIOCACHE_CACHES
from aiocache.base import BaseCache
from aiocache.serializers import StringSerializer
from traitlets import Bool, Dict, Float, Integer, List, Unicode, Union, default, observe
from traitlets.config import LoggingConfigurable
from traitlets.utils.importstring import import_item

from .codec import Codec, EncryptionKeyError, parse_keys
from .locks import acquire_lease
from .memcached_store import MemcachedStore
from .memory import MemoryStore
from .redis_replicated import ClusterStore, ReplicatedRedisStore
from .redis_store import RedisStore
from .redis_topology import RedisURLError, TopologyRedisCache, is_topology_url, topology_backend
from .shared import SharedStore
from .store import CacheKey, Store

T = TypeVar("T")
Creator = Callable[[], Awaitable[tuple[Any, "float | None"]]]
Acceptor = Callable[[Any], "bool | Awaitable[bool]"]

DEFAULT_URLS = {"redis": "redis://127.0.0.1:6379/0", "memcached": "memcached://127.0.0.1:11211"}


#: aiomcache pools 2 connections by default, too few for a hub under load.
_POOL_DEFAULTS: dict[str, dict[str, Any]] = {
    "memcached": {"pool_size": 8},
    "redis": {"pool_max_size": 64},
}

#: Stores by the settings that built them: instances with equal settings share one.
_STORES: dict[tuple[Any, ...], Store] = {}
#: Background tasks (closing dropped stores, deletes from commit hooks), held so they are
#: not garbage-collected mid-flight; close_all waits for them.
_TASKS: set[asyncio.Task[None]] = set()


#: The fix of a backend that names no backend.
_BACKEND_FIX = (
    'set TokenCache.backend to "memory", "redis", "memcached" or the import path of an '
    "aiocache cache class installed in the hub's environment"
)


class LeaseTimeout(TimeoutError):
    """Another process held a key's lease longer than a caller of ``exclusive`` would wait."""


class TokenCacheConfigError(ValueError):
    """The cache settings cannot work; raised when the hub starts, not on a request.

    ``fix`` says what to change, for ``jupyter-token-cache check-config``'s ``fix:`` line.
    """

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


async def close_all() -> None:
    """Close every store in this process (hub shutdown, test teardown)."""
    if _TASKS:  # deletes started by commit hooks, stores dropped by reconfiguration
        await asyncio.wait(set(_TASKS))
    stores = list(_STORES.values())
    _STORES.clear()
    for store in stores:
        await store.close()
    if _TASKS:
        await asyncio.wait(set(_TASKS))


class CacheEngine(LoggingConfigurable):
    """A cache of short-lived secrets in front of whatever mints them.

    Entries are JSON-compatible values, each with the expiry of the token it holds.
    ``get_or_create`` is the main entry point: a hit returns the cached value, a miss
    runs the creator exactly once however many callers (and, on a shared backend,
    processes) ask at the same time.

    Notes
    -----
    Instances built from the same settings in one process share one store — one memory
    LRU, one connection pool — as Globus Action Provider Tools' token checkers share one
    cache region. Changing a setting on an instance moves it to a store built from the new
    settings; the old store is closed, and its contents dropped, once no instance uses it.
    """

    enabled = Bool(
        True,
        config=True,
        help="""Cache tokens at all. When False every lookup is a miss and nothing is
        stored: each request mints a new token, as without this extension.""",
    )
    backend = Unicode(
        "memory",
        config=True,
        help="""Where entries live: "memory" (this hub process only), "redis",
        "memcached", or the import path of an aiocache backend class
        (e.g. "mypackage.MyCache"). Redis and memcached let several hub processes share
        entries and survive hub restarts; they need `url` and an encryption key.""",
    )
    url = Unicode(
        "",
        config=True,
        help="""Address of the Redis or memcached server, e.g.
        "redis://127.0.0.1:6379/0" or "memcached://127.0.0.1:11211". Query parameters
        are passed to the aiocache backend. Empty means the backend's local default.
        With backend "redis", a Sentinel-managed master is
        "redis+sentinel://[:password@]host:port[,host:port...]/<service>[/<db>]" and a
        Redis Cluster "redis+cluster://[:password@]host:port[,host:port...]"
        ("rediss+..." for TLS); see the backends page of the docs.""",
    )
    backend_options = Dict(
        config=True,
        help="""Extra keyword arguments for the aiocache backend class, e.g.
        {"pool_max_size": 20} for Redis or {"pool_size": 4} for memcached.""",
    )
    namespace = Unicode(
        "jupyter-token-cache",
        config=True,
        help="""Prefix of every key on a shared backend, so several hubs can share one
        server without seeing each other's entries.""",
    )
    ttl = Float(
        86400.0,
        config=True,
        help="""The longest (seconds) any entry is kept. An entry is also never kept
        past the expiry of the token it holds.""",
    )
    max_size = Integer(
        10_000,
        config=True,
        help="""Most entries the memory backend keeps; the least recently used go first.
        On a shared backend, most decrypted entries remembered in this process (a hit
        still asks the server, but an unchanged entry is not decrypted again).""",
    )
    operation_timeout = Float(
        0.5,
        config=True,
        help="""Seconds a backend call may take. A slower or failing call is treated as a
        miss (the token is minted instead) and counted as an error.""",
    )
    retry_interval = Float(
        1.0,
        config=True,
        help="""After a backend call fails, seconds to serve misses without calling the
        backend again, so a dead server costs one timeout per request at most.""",
    )
    lock_timeout = Float(
        5.0,
        config=True,
        help="""On a shared backend, seconds a request waits for another hub process
        creating the same entry before creating its own. Also the expiry of that lease,
        so a process that dies while creating blocks no one for longer.""",
    )
    local_cache = Bool(
        True,
        config=True,
        help="""On Redis, keep a copy of each entry this process has read, while it is
        subscribed to the namespace's notifications: a write, delete or clear by any
        process evicts the copy, so a hit needs no round trip to Redis. If notifications
        may have been missed, copies are dropped and every lookup asks Redis again.
        memcached has no notifications: there every hit asks the server.""",
    )
    encryption_key = Union(
        [List(Unicode()), Unicode()],
        config=True,
        help="""Fernet keys (32 bytes, hex or base64) sealing entries on a shared backend,
        as a list or a ";"-separated string; the first key encrypts, all decrypt, so a
        new key goes in front to rotate. Defaults to $JUPYTERHUB_CRYPT_KEY. Required
        for redis and memcached; the memory backend needs none.""",
    )

    @default("encryption_key")
    def _encryption_key_default(self) -> str:
        return os.environ.get("JUPYTERHUB_CRYPT_KEY", "")

    _settings: tuple[str, ...] = (
        "backend",
        "url",
        "backend_options",
        "namespace",
        "ttl",
        "max_size",
        "operation_timeout",
        "retry_interval",
        "lock_timeout",
        "local_cache",
        "encryption_key",
    )

    def __init__(self, **kwargs: Any) -> None:
        self._store: Store | None = None
        super().__init__(**kwargs)
        self._enabled = self.enabled
        self.store  # noqa: B018 - build now: a bad setting fails the hub's start, not a request

    # -- the store ----------------------------------------------------------------------

    @observe("enabled")
    def _enabled_changed(self, change: Any) -> None:
        # a plain attribute: reading a trait costs ~0.5 µs on every lookup
        self._enabled = change.new

    @observe(*_settings)
    def _settings_changed(self, change: Any) -> None:
        orphan = self._detach()
        if orphan is not None:
            orphan.drop()
            try:
                task = asyncio.get_running_loop().create_task(orphan.close())
            except RuntimeError:  # no loop running: nothing was connected from here
                return
            _TASKS.add(task)
            task.add_done_callback(_TASKS.discard)

    def _detach(self) -> Store | None:
        """Stop using the store; return it if no instance uses it any more."""
        store: Store | None = getattr(self, "_store", None)
        self._store = None
        if store is None:
            return None
        store.users -= 1
        if store.users > 0:
            return None
        if _STORES.get(store.settings) is store:
            del _STORES[store.settings]
        return store

    @property
    def store(self) -> Store:
        """The store these settings select, shared with every instance of equal settings."""
        if self._store is None:
            settings = tuple(
                repr(sorted(v.items())) if isinstance(v, dict) else repr(v)
                for v in (getattr(self, name) for name in self._settings)
            )
            store = _STORES.get(settings)
            if store is None:
                store = _STORES[settings] = self._build_store()
                store.settings = settings
            store.users += 1
            self._store = store
        return self._store

    def _build_store(self) -> Store:
        if self.backend == "memory":
            return MemoryStore(max_size=self.max_size, ttl=self.ttl)
        backend = self._aiocache_backend()
        try:
            keys = parse_keys(self.encryption_key)
        except EncryptionKeyError as e:
            raise TokenCacheConfigError(
                f"{type(self).__name__}.encryption_key: {e}",
                "generate one with `openssl rand -hex 32`",
            ) from None
        if not keys:
            raise TokenCacheConfigError(
                f"The {self.backend!r} token cache backend is shared with other processes, so "
                f"its entries are encrypted: set c.{type(self).__name__}.encryption_key or "
                "JUPYTERHUB_CRYPT_KEY (e.g. `openssl rand -hex 32`).",
                f"set c.{type(self).__name__}.encryption_key, or JUPYTERHUB_CRYPT_KEY in the "
                "hub's environment, to a key from `openssl rand -hex 32` (the same in every "
                "process sharing the backend)",
            )
        kind = _store_class(backend)
        extra = {"local_cache": self.local_cache} if issubclass(kind, RedisStore) else {}
        if kind is ClusterStore and {"{", "}"} & set(self.namespace):
            raise TokenCacheConfigError(
                f"{type(self).__name__}.namespace: a Redis Cluster namespace cannot hold "
                "'{' or '}' (they would be read as hash tags)",
                f"remove '{{' and '}}' from {type(self).__name__}.namespace",
            )
        return kind(
            backend,
            **extra,
            codec=Codec(keys),
            namespace=self.namespace,
            ttl=self.ttl,
            operation_timeout=self.operation_timeout,
            retry_interval=self.retry_interval,
            lease_ttl=self.lock_timeout,
            opened_size=self.max_size,
            connections=_pool_size(backend),
            log=self.log,
        )

    def _aiocache_backend(self) -> BaseCache:
        if self.backend in DEFAULT_URLS:
            cls = AIOCACHE_CACHES.get(self.backend)
            if cls is None:
                raise TokenCacheConfigError(
                    f"The {self.backend!r} token cache backend needs its client library: "
                    f"pip install 'jupyter-token-cache[{self.backend}]'",
                    f"pip install 'jupyter-token-cache[{self.backend}]' in the hub's environment",
                )
        else:
            try:
                cls = import_item(self.backend)
            except (ImportError, AttributeError, ValueError) as e:
                raise TokenCacheConfigError(
                    f"TokenCache.backend {self.backend!r} is neither memory, redis, memcached "
                    f"nor an importable aiocache backend class: {e}",
                    _BACKEND_FIX,
                ) from None
            if not (isinstance(cls, type) and issubclass(cls, BaseCache)):
                raise TokenCacheConfigError(
                    f"TokenCache.backend {self.backend!r} is not an aiocache backend class",
                    _BACKEND_FIX,
                )
        if self.backend == "redis" and is_topology_url(self.url):
            try:
                return topology_backend(self.url, self.backend_options)
            except RedisURLError as e:
                raise TokenCacheConfigError(
                    f"{type(self).__name__}.url: {e}",
                    f"fix {type(self).__name__}.url (its forms are on the backends page)",
                ) from None
        url = urllib.parse.urlparse(self.url or DEFAULT_URLS.get(self.backend, ""))
        options: dict[str, Any] = dict(urllib.parse.parse_qsl(url.query))
        if url.path and hasattr(cls, "parse_uri_path"):
            options.update(cls.parse_uri_path(url.path))
        if url.hostname:
            options["endpoint"] = url.hostname
        if url.port:
            options["port"] = url.port
        if url.password:
            options["password"] = url.password
        options.update(_POOL_DEFAULTS.get(cls.NAME, {}) if hasattr(cls, "NAME") else {})
        options.update(self.backend_options)
        # timeout=0: aiocache's own wait_for costs ~45 µs a call; the store bounds calls itself.
        return cls(serializer=StringSerializer(), timeout=0, **options)

    # -- the cache ----------------------------------------------------------------------

    async def get(self, key: CacheKey, *, accept: Acceptor | None = None) -> Any:
        """Return the cached value for ``key``, or None (also when ``accept`` refuses it)."""
        store = self._store or self.store
        if self._enabled:
            value, _ = await store.get(key)
            if value is not None and await _accepts(accept, value):
                store.stats.add("hits", key.kind)
                return value
        store.stats.add("misses", key.kind)
        return None

    async def set(self, key: CacheKey, value: Any, *, expires_at: float | None) -> None:
        """Cache ``value`` (JSON-compatible) until ``expires_at`` (epoch seconds) or ``ttl``."""
        if self.enabled:
            await self.store.set(key, value, expires_at)

    async def get_or_create(
        self, key: CacheKey, create: Creator, *, accept: Acceptor | None = None
    ) -> tuple[Any, bool]:
        """Return ``(value, created)``: the cached value, or one ``create()`` made now.

        ``create`` returns ``(value, expires_at)``. ``accept(value)`` (sync or async) may
        refuse a cached value — too close to expiry, revoked meanwhile — which then counts
        as a miss. ``created`` is True only for the caller whose call ran ``create``;
        concurrent callers for the same key share that one result.
        """
        store = self._store or self.store
        if not self._enabled:
            store.stats.add("misses", key.kind)
            store.stats.add("creations", key.kind)
            return (await create())[0], True
        value, _ = await store.get(key)
        if value is not None and await _accepts(accept, value):
            store.stats.add("hits", key.kind)
            return value, False
        store.stats.add("misses", key.kind)
        (value, created), led = await store.flights.run(
            key, partial(self._create, store, key, create, accept)
        )
        return value, created and led

    async def _create(
        self, store: Store, key: CacheKey, create: Creator, accept: Acceptor | None
    ) -> tuple[Any, bool]:
        lease = None
        if store.shared:
            lease = secrets.token_hex(16)

            async def ready() -> Any:
                value, _ = await store.get(key)
                return value if value is not None and await _accepts(accept, value) else None

            held, value = await acquire_lease(
                store, key, lease, timeout=self.lock_timeout, ready=ready
            )
            if value is not None:
                return value, False
            if not held:
                lease = None
        try:
            value, stamp = await store.get(key)
            if value is not None and await _accepts(accept, value):
                return value, False
            value, expires_at = await create()
            store.stats.add("creations", key.kind)
            await store.set(key, value, expires_at, stamp)
            return value, True
        finally:
            if lease is not None:
                await store.unlock(key, lease)

    async def exclusive(
        self, key: CacheKey, work: Callable[[], Awaitable[T]], *, timeout: float
    ) -> T:
        """Run ``work`` while no other caller runs work for ``key``: none in this process,
        and, on a shared backend, none in another process sharing it (the key's lease).

        Raises :class:`LeaseTimeout` when another process held the lease past ``timeout``.

        Notes
        -----
        Unlike :meth:`get_or_create`, nothing is cached and each caller runs its own
        ``work``, in turn: this is for work that changes what the next run reads (a refresh
        token that the identity provider rotates at each use), where a second run must
        start from the first one's result, not beside it. The lease is the one creations
        take, and lives ``lock_timeout`` seconds. A backend that cannot say who holds it
        fails open, as creations do; a lease still held by another process after
        ``timeout`` is a refusal instead, since running beside its holder is what the
        caller must never do.
        """
        store = self._store or self.store

        async def leased() -> T:
            if not store.shared:
                return await work()
            lease = secrets.token_hex(16)
            started = time.monotonic()
            held, _ = await acquire_lease(store, key, lease, timeout=timeout, ready=_nothing)
            if not held and time.monotonic() - started >= timeout:
                raise LeaseTimeout(f"Another process held the lease for {timeout:g} s")
            try:
                return await work()
            finally:
                if held:
                    await store.unlock(key, lease)

        return await store.locks.run(key, leased)

    async def run_once(self, key: CacheKey, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """One run of ``work`` for concurrent callers of ``key`` in this process: ``(result, led)``.

        The single flight of :meth:`get_or_create` without its cache: callers that arrive
        while a run is under way share its result (``led`` is True for the one that
        started it), and a caller that stops waiting does not stop the run.
        """
        store = self._store or self.store
        return await store.flights.run(("run_once", key), work)

    async def delete(self, key: CacheKey) -> bool:
        """Evict one entry (a revoked token); True when one was there."""
        deleted = await self.store.delete(key)
        if deleted:
            self.store.stats.add("evictions", key.kind)
        return deleted

    async def clear(self, user: str | None = None) -> bool:
        """Forget every entry, or one user's; False when the backend could not be reached."""
        return await self.store.clear(user) is not False

    def discard(self, key: CacheKey) -> None:
        """Evict ``key`` now, from a synchronous caller (a database commit hook).

        This process stops seeing the entry before this returns; on a shared backend the
        entry itself is deleted by a task started here, moments later.
        """
        store = self.store
        if store.forget(key):
            store.stats.add("evictions", key.kind)
        elif store.shared:
            self._background(self.delete(key))

    def discard_user(self, user: str) -> None:
        """Forget ``user``'s entries now, from a synchronous caller; as :meth:`discard`."""
        if not self.store.forget_user(user):
            self._background(self.clear(user))

    def _background(self, work: Awaitable[Any]) -> None:
        try:
            task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(work)  # type: ignore[arg-type]
        except RuntimeError:  # no loop: nothing shared was ever connected from here
            work.close()  # type: ignore[attr-defined]
            return
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)

    def stats(self) -> dict[str, Any]:
        """Counters since the store was built, plus what describes it."""
        store = self.store
        return {
            "backend": store.name,
            "enabled": self.enabled,
            "available": store.available,
            "health": store.health(),
            **store.stats.totals(),
            "entries": store.entries(),
            "by_kind": store.stats.by_kind(),
        }

    async def close(self) -> None:
        """Stop using the store; it is closed when no other instance uses it."""
        orphan = self._detach()
        if orphan is not None:
            await orphan.close()


def _pool_size(backend: BaseCache) -> int:
    """How many calls the backend's client can have in flight at once."""
    if isinstance(backend, TopologyRedisCache):
        return backend.max_connections
    client = getattr(backend, "client", None)
    pool = getattr(client, "connection_pool", None)  # redis-py
    if pool is not None:
        return int(pool.max_connections)
    pool = getattr(client, "_pool", None)  # aiomcache
    if pool is not None:
        return int(pool._maxsize)
    return 1024


def _store_class(backend: BaseCache) -> type[SharedStore]:
    """The store that knows ``backend``'s protocol best; the generic one otherwise."""
    if isinstance(backend, TopologyRedisCache):
        return ClusterStore if backend.topology.kind == "cluster" else ReplicatedRedisStore
    for name, store in (("redis", RedisStore), ("memcached", MemcachedStore)):
        cls = AIOCACHE_CACHES.get(name)
        if cls is not None and isinstance(backend, cls):
            return store
    return SharedStore


async def _nothing() -> None:
    """What ``exclusive`` waits to find while another process holds the lease: nothing."""
    return None


async def _accepts(accept: Acceptor | None, value: Any) -> bool:
    if accept is None:
        return True
    verdict = accept(value)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)
