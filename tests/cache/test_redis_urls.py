"""redis+sentinel:// and redis+cluster:// URLs: what they say, and bad ones refused at start."""

from __future__ import annotations

import pytest

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache import TokenCacheConfigError
from jupyter_token_cache.cache.redis_replicated import ClusterStore, ReplicatedRedisStore
from jupyter_token_cache.cache.redis_store import RedisStore
from jupyter_token_cache.cache.redis_topology import RedisTopology, parse_url


def test_sentinel_url():
    url = "rediss+sentinel://:s%40cret@10.0.0.1:26380,[::1],h3/mymaster/2?sentinel_password=x%3By"
    assert parse_url(url) == RedisTopology(
        kind="sentinel",
        hosts=(("10.0.0.1", 26380), ("::1", 26379), ("h3", 26379)),
        tls=True,
        service="mymaster",
        db=2,
        username=None,
        password="s@cret",
        options={"sentinel_password": "x;y"},
    )


def test_cluster_url():
    topology = parse_url("redis+cluster://bob:pw@a:7000,b")
    assert topology.kind == "cluster" and topology.hosts == (("a", 7000), ("b", 6379))
    assert (topology.username, topology.password, topology.tls, topology.db) == (
        "bob",
        "pw",
        False,
        0,
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://h:1", "/<service name>"),
        ("redis+sentinel://h:1/svc/zero", "database number"),
        ("redis+sentinel://h:port/svc", "port must be a whole number"),
        ("redis+sentinel:///svc", "at least one host"),
        ("redis+cluster://h:1/0", "no path"),
        ("redis+cluster://h:1?pool=3", "unknown"),
    ],
)
def test_bad_urls_fail_at_start(url, message, crypt_key):
    with pytest.raises(TokenCacheConfigError, match=message):
        TokenCache(backend="redis", url=url, encryption_key=crypt_key)


def test_cluster_namespace_cannot_hold_hash_tags(crypt_key):
    with pytest.raises(TokenCacheConfigError, match="hash tags"):
        TokenCache(backend="redis", url="redis+cluster://h:1", namespace="a{b}",
                   encryption_key=crypt_key)  # fmt: skip


async def test_the_url_picks_the_store(crypt_key):
    """Nothing connects until the first call: building the stores needs no server."""
    kinds = {
        "redis://127.0.0.1:1/0": RedisStore,
        "redis+sentinel://127.0.0.1:1/svc": ReplicatedRedisStore,
        "redis+cluster://127.0.0.1:1": ClusterStore,
    }
    for url, kind in kinds.items():
        cache = TokenCache(backend="redis", url=url, encryption_key=crypt_key)
        assert type(cache.store) is kind and cache.stats()["backend"] == "redis"
        await cache.close()
