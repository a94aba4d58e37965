"""TokenCache settings: every trait configurable with help, shared stores, reconfiguration."""

from __future__ import annotations

import time

import pytest
from traitlets.config import Config

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache import TokenCacheConfigError

from .helpers import Creator, key


def test_every_trait_is_configurable_with_help():
    traits = TokenCache.class_traits(config=True)
    assert {"enabled", "backend", "url", "backend_options", "namespace", "ttl", "max_size",
            "operation_timeout", "encryption_key"} <= set(traits)  # fmt: skip
    for name, trait in traits.items():
        assert trait.help and len(trait.help) > 30, name


def test_help_all_lists_the_settings():
    text = "\n".join(TokenCache.class_get_help().splitlines())
    assert "--TokenCache.backend" in text and "--TokenCache.max_size" in text


async def test_loaded_from_config_object(make_cache):
    config = Config()
    config.TokenCache.max_size = 7
    config.TokenCache.ttl = 12.5
    cache = make_cache(config=config)
    assert (cache.max_size, cache.ttl) == (7, 12.5)


async def test_equal_settings_share_one_store(make_cache):
    first, second = make_cache(), make_cache()
    assert first.store is second.store
    await first.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    assert await second.get(key()) == {"token": "t"}


async def test_reconfiguring_drops_the_old_store(make_cache, backend):
    cache = make_cache()
    old = cache.store
    await cache.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    cache.max_size = 5 if backend == "memory" else cache.max_size
    cache.namespace = cache.namespace + "-changed"
    assert cache.store is not old
    assert await cache.get(key()) is None
    if backend == "memory":
        assert old.entries() == 0  # its contents went with it


async def test_store_kept_while_another_instance_uses_it(make_cache):
    first, second = make_cache(), make_cache()
    shared = first.store
    await first.set(key(), {"token": "t"}, expires_at=time.time() + 60)
    first.namespace = first.namespace + "-other"
    assert second.store is shared
    assert await second.get(key()) == {"token": "t"}


def test_bad_backends_fail_at_start():
    with pytest.raises(TokenCacheConfigError, match="importable"):
        TokenCache(backend="no.such.Backend")
    with pytest.raises(TokenCacheConfigError, match="not an aiocache backend"):
        TokenCache(backend="collections.OrderedDict")


async def test_aiocache_backend_class_by_import_path(crypt_key):
    """Any aiocache backend class works through the generic shared store."""
    cache = TokenCache(backend="aiocache.SimpleMemoryCache", encryption_key=crypt_key,
                       namespace="custom")  # fmt: skip
    create = Creator()
    await cache.get_or_create(key(), create)
    assert (await cache.get_or_create(key(), create))[1] is False
    await cache.clear(user="alice")
    assert await cache.get(key()) is None
    assert cache.stats()["backend"] == "memory" and cache.store.shared
    await cache.close()


@pytest.mark.parametrize("backend", ["redis", "memcached"], indirect=True)
async def test_backend_options_reach_the_client(make_cache, backend):
    if backend == "redis":
        cache = make_cache(backend_options={"pool_max_size": 7})
        assert cache.store.backend.client.connection_pool.max_connections == 7
    else:
        cache = make_cache(backend_options={"pool_size": 3})
        assert cache.store.backend.client._pool._maxsize == 3
