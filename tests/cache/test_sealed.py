"""Behaviour 3: shared backends hold HMAC key names and Fernet-sealed JSON, never plaintext.

The memory backend keeps values inside the hub process and is not covered here.
"""

from __future__ import annotations

import pickle
import time

import pytest
from cryptography.fernet import Fernet

from jupyter_token_cache.cache import CacheKey, TokenCacheConfigError

from ..conftest import SHARED_CACHE_BACKENDS, settings_for
from .helpers import Creator

pytestmark = pytest.mark.parametrize("backend", SHARED_CACHE_BACKENDS, indirect=True)

SECRETS = ["very-secret-token-0123456789", "parent-token-abcdef", "alice@example.org",
           "notebook-kind", "session-xyz", "access:servers!user=alice"]  # fmt: skip


def dump(backend, request) -> dict[str, bytes]:
    """Every key and value on the server."""
    fixture = {"redis-sentinel": "redis_sentinel", "redis-cluster": "redis_cluster"}
    return request.getfixturevalue(fixture.get(backend, f"{backend}_server")).dump()


async def test_no_plaintext_in_any_key_or_value(cache, backend, request):
    key = CacheKey(
        "alice@example.org", "notebook-kind", ("session-xyz", "access:servers!user=alice")
    )
    await cache.get_or_create(key, Creator(value={"token": SECRETS[0], "parent": SECRETS[1]}))
    await cache.clear(user="alice@example.org")
    await cache.set(key, {"token": SECRETS[0]}, expires_at=time.time() + 60)
    entries = dump(backend, request)
    assert entries, "nothing was stored"
    for name, value in entries.items():
        for secret in SECRETS:
            assert secret not in name
            assert secret.encode() not in value
    ours = [v for n, v in entries.items() if n.startswith(f"{cache.namespace}:e:")]
    assert ours and all(b"|gAAAAA" in v for v in ours)  # stamp|Fernet token


async def test_value_moved_to_another_key_does_not_open(cache):
    alice, bob = CacheKey("alice", "notebook", ("s",)), CacheKey("bob", "notebook", ("s",))
    await cache.set(bob, {"token": "bob-token"}, expires_at=time.time() + 60)
    await cache.get(alice)  # creates alice's generation
    store = cache.store
    raw_bob = await store.backend.get(store._entry_name(bob))
    # An attacker with write access copies bob's entry under alice's name, restamped.
    _, alice_stamp = await store.get(alice)
    forged = f"{alice_stamp}|{raw_bob.partition('|')[2]}"
    await store.backend.set(store._entry_name(alice), forged)
    assert await cache.get(alice) is None


async def test_pickle_payload_is_never_loaded(cache):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('pickle was loaded')",))

    k = CacheKey("alice", "notebook", ("s",))
    store = cache.store
    _, stamp = await store.get(k)
    await store.backend.set(store._entry_name(k), f"{stamp}|" + pickle.dumps(Boom()).hex())
    assert await cache.get(k) is None


async def test_entry_sealed_under_unknown_key_is_a_miss(make_cache):
    writer = make_cache()
    k = CacheKey("alice", "notebook", ("s",))
    await writer.set(k, {"token": "t"}, expires_at=time.time() + 60)
    other = make_cache(encryption_key=[Fernet.generate_key().decode(), writer.encryption_key])
    # same names (derived from the last key) but a new first key: still readable
    assert await other.get(k) == {"token": "t"}
    stranger = make_cache(encryption_key=Fernet.generate_key().decode())
    assert await stranger.get(k) is None


async def test_key_rotation_new_key_first(make_cache, crypt_key):
    old = make_cache(encryption_key=crypt_key)
    k_old, k_new = CacheKey("alice", "n", ("old",)), CacheKey("alice", "n", ("new",))
    await old.set(k_old, {"token": "old"}, expires_at=time.time() + 60)
    new_key = Fernet.generate_key().decode()
    rotated = make_cache(encryption_key=f"{new_key};{crypt_key}")
    assert await rotated.get(k_old) == {"token": "old"}
    await rotated.set(k_new, {"token": "new"}, expires_at=time.time() + 60)
    raw = await rotated.store.backend.get(rotated.store._entry_name(k_new))
    assert Fernet(new_key.encode()).decrypt(raw.partition("|")[2].encode())


async def test_shared_backend_without_key_fails_at_start(backend, request, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY", raising=False)
    from jupyter_token_cache import TokenCache

    settings = settings_for(backend, request, "")
    del settings["encryption_key"]
    with pytest.raises(TokenCacheConfigError, match="encryption_key"):
        TokenCache(**settings)
    with pytest.raises(TokenCacheConfigError, match="32 bytes"):
        TokenCache(**{**settings, "encryption_key": "too-short"})


async def test_key_from_jupyterhub_crypt_key(backend, request, monkeypatch, crypt_key):
    from jupyter_token_cache import TokenCache

    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", f"{'ab' * 32};{crypt_key}")
    settings = settings_for(backend, request, "")
    del settings["encryption_key"]
    cache = TokenCache(**settings)
    await cache.set(CacheKey("a", "n"), {"t": 1}, expires_at=time.time() + 60)
    assert await cache.get(CacheKey("a", "n")) == {"t": 1}
    await cache.close()
