"""Redis Sentinel and Redis Cluster: their URLs, and aiocache backends over redis-py's clients.

``TokenCache.backend = "redis"`` stays the one Redis setting; the URL's scheme picks the
topology:

``redis://`` / ``rediss://``
    one server (aiocache's own ``RedisCache``).
``redis+sentinel://[[user]:password@]host:port[,host:port...]/<service>[/<db>]``
    the master of ``<service>`` as the sentinels at those addresses know it (port 26379
    when left out). ``rediss+sentinel://`` talks TLS to the Redis servers.
``redis+cluster://[[user]:password@]host:port[,host:port...]``
    a Redis Cluster found from those seed nodes (port 6379 when left out).
    ``rediss+cluster://`` talks TLS.

Query options (URL-encoded): ``sentinel_password`` and ``sentinel_username`` when the
sentinels have their own ``requirepass``/ACL user (the password in the URL is the Redis
servers).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from aiocache.base import BaseCache
from aiocache.serializers import StringSerializer

try:
    from aiocache import RedisCache
except ImportError:  # pragma: no cover - no redis extra; the engine says what to install
    RedisCache = BaseCache

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}
_OPTIONS = {"sentinel_password", "sentinel_username"}


class RedisURLError(ValueError):
    """A ``redis+sentinel://`` or ``redis+cluster://`` URL that cannot work."""


@dataclass(frozen=True)
class RedisTopology:
    """What a Sentinel or Cluster URL says."""

    kind: str  # "sentinel" or "cluster"
    hosts: tuple[tuple[str, int], ...]
    tls: bool = False
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def is_topology_url(url: str) -> bool:
    """True for the URL schemes this module handles."""
    scheme = url.partition("://")[0].lower()
    return scheme in SENTINEL_SCHEMES or scheme in CLUSTER_SCHEMES


def parse_url(url: str) -> RedisTopology:
    """Read a ``redis+sentinel://`` or ``redis+cluster://`` URL.

    ``urllib.parse`` cannot read a netloc holding several ``host:port`` pairs (its
    ``.port`` raises), so the userinfo and the host list are split here.
    """
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in SENTINEL_SCHEMES:
        kind, tls, default_port = "sentinel", SENTINEL_SCHEMES[scheme], 26379
    elif scheme in CLUSTER_SCHEMES:
        kind, tls, default_port = "cluster", CLUSTER_SCHEMES[scheme], 6379
    else:
        raise RedisURLError(f"not a Redis Sentinel or Cluster URL scheme: {scheme!r}")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if has_password else None
    hosts = tuple(_host(item, default_port) for item in hostlist.split(",") if item)
    if not hosts:
        raise RedisURLError(f"a {scheme}:// URL needs at least one host:port")
    path = [urllib.parse.unquote(p) for p in parts.path.split("/") if p]
    service, db = "", 0
    if kind == "sentinel":
        if not path or len(path) > 2:
            raise RedisURLError(f"{scheme}:// URLs end in /<service name>[/<db>]")
        service = path[0]
        db = _int(path[1], "database number") if len(path) == 2 else 0
    elif path:
        raise RedisURLError("redis+cluster:// URLs have no path: a cluster has only db 0")
    options = dict(urllib.parse.parse_qsl(parts.query))
    unknown = set(options) - _OPTIONS
    if unknown:
        raise RedisURLError(
            f"unknown {scheme}:// option(s) {sorted(unknown)}; known: {sorted(_OPTIONS)}"
        )
    return RedisTopology(kind, hosts, tls, service, db, username, password, options)


def _host(item: str, default_port: int) -> tuple[str, int]:
    host, port = item, ""
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    elif ":" in item:
        host, _, port = item.rpartition(":")
    if not host:
        raise RedisURLError(f"no host in {item!r}")
    return host, _int(port, "port") if port else default_port


def _int(text: str, what: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise RedisURLError(f"{what} must be a whole number, not {text!r}") from None
    if number < 0:
        raise RedisURLError(f"{what} must not be negative")
    return number


class TopologyRedisCache(RedisCache):  # type: ignore[misc]
    """aiocache's ``RedisCache`` over a client built elsewhere (Sentinel or Cluster).

    aiocache's constructor builds a ``ConnectionPool`` for one host and port; everything
    else it does goes through ``self.client``, so this class skips that constructor and
    sets ``client`` to redis-py's Sentinel master client or ``RedisCluster``.
    """

    def __init__(self, client: Any, topology: RedisTopology, max_connections: int) -> None:
        BaseCache.__init__(self, serializer=StringSerializer(), timeout=0)
        self.client = client
        self.topology = topology
        self.max_connections = max_connections
        self.endpoint, self.port = topology.hosts[0]
        self.db = topology.db
        self.password = topology.password
        self.sentinel: Any = None

    async def _close(self, *args: Any, _conn: Any = None, **kwargs: Any) -> None:
        await self.client.aclose()
        if self.sentinel is not None:
            for sentinel in self.sentinel.sentinels:
                await sentinel.aclose()


def topology_backend(url: str, options: dict[str, Any]) -> TopologyRedisCache:
    """The aiocache backend for a Sentinel or Cluster ``url``.

    ``options`` are ``TokenCache.backend_options``: ``pool_max_size`` (connections per
    server) and ``create_connection_timeout`` as for one server; anything else goes to
    redis-py's client as connection keyword arguments.
    """
    topology = parse_url(url)
    extra = dict(options)
    max_connections = int(extra.pop("pool_max_size", 64))
    connect_timeout = extra.pop("create_connection_timeout", None)
    connection: dict[str, Any] = {
        "username": topology.username,
        "password": topology.password,
        "decode_responses": False,
        "socket_connect_timeout": float(connect_timeout) if connect_timeout else 2.0,
        **extra,
    }
    if topology.tls:
        connection["ssl"] = True
    if topology.kind == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        sentinel_kwargs = {
            "username": topology.options.get("sentinel_username"),
            "password": topology.options.get("sentinel_password"),
            "socket_connect_timeout": connection["socket_connect_timeout"],
            "socket_timeout": connection["socket_connect_timeout"],
        }
        manager = Sentinel(list(topology.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call,unused-ignore]  # typed since redis 8
        client = manager.master_for(
            topology.service, db=topology.db, max_connections=max_connections, **connection
        )
        backend = TopologyRedisCache(client, topology, max_connections)
        backend.sentinel = manager
        return backend
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in topology.hosts],
        # keys on the shards still up stay usable while one shard fails over
        require_full_coverage=False,
        max_connections=max_connections,
        **connection,
    )
    return TopologyRedisCache(client, topology, max_connections)
