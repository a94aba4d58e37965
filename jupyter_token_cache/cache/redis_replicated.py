"""Redis with replicas: Sentinel (one master that can move) and Cluster (keys hashed across masters)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiocache.base import BaseCache

from .redis_store import RedisStore
from .shared import FAILED
from .store import CacheKey


class NotReplicated(RuntimeError):
    """A clear or delete that no replica acknowledged in time: a failover could lose it."""


class ReplicatedRedisStore(RedisStore):
    """:class:`RedisStore` on a Sentinel-managed master: clears and deletes survive failover.

    redis-py's ``SentinelConnectionPool`` asks the sentinels for the master's address on
    every new connection, so after a failover the store follows the promoted replica by
    itself. Calls that fail meanwhile are misses (fail-open, then ``retry_interval``);
    the notification listener loses its connection with the old master, forgets every
    generation and copy it knew, and subscribes again on the new one.

    Notes
    -----
    *A failover never serves a revoked token.* Redis replicates asynchronously: a clear
    or a delete acknowledged by the master may not have reached its replica when the
    master dies, and the promoted replica would then hold the old generation or the
    deleted entry — a revoked token could be served again. So a clear or a delete runs
    its script, asks the master (``ROLE``) which replicas are connected, and ``WAIT`` s,
    on the same connection, until all of them have it (bounded by
    ``operation_timeout``). Only then is it reported done; if a replica does not
    acknowledge in time it counts as a failed call (``False`` from ``clear``), as if
    the server were unreachable. A replica that is disconnected at that moment resyncs
    from this master before it can be promoted, so it cannot miss the change either.
    With no replica connected there is nothing to wait for and nothing to promote.

    The alternative — bumping the global generation whenever a new master is seen —
    would make every failover a full cache miss and would still need every process to
    see the change before its first read from the new master. Waiting costs one more
    round trip on clears and deletes only, which are rare; the hit path is unchanged.

    A clear or delete that fails (the master is gone, or no replica acknowledged it) is
    not forgotten: until it has been applied, with its replicas' acknowledgement, this
    process treats every entry it covers as a miss, and it is retried every
    ``retry_interval`` — so a revocation made during the failover window, which would
    otherwise reach neither the dead master nor the promoted replica, is applied on the
    new master as soon as there is one. Past ``max_size`` pending changes they collapse
    into one pending global clear.

    Writes of new entries are not waited for: an entry lost in a failover is only a
    miss. What ``WAIT`` cannot cover is a replica cut off from its master (a network
    partition) and promoted anyway; Redis' ``min-replicas-to-write`` is the server-side
    answer to that.
    """

    def __init__(self, backend: BaseCache, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        #: clears and deletes not yet confirmed: key name -> (script, its arguments)
        self._pending: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._reapplying: asyncio.Task[None] | None = None

    async def get(self, key: CacheKey) -> tuple[Any, Any]:
        if self._pending and (
            self._global_name in self._pending
            or self._user_name(key.user) in self._pending
            or self._entry_name(key) in self._pending
        ):
            return None, None  # a clear or delete covering it is not applied yet
        return await super().get(key)

    def _unconfirmed(self, script: str, name: str, *args: str) -> None:
        if len(self._pending) >= self._opened_size:  # bounded: one global clear instead
            self._pending.clear()
            script, name, args = self.CLEAR, self._global_name, (next(self._nonces), self._channel)
        self._pending[name] = (script, args)
        if self._reapplying is None or self._reapplying.done():
            self._reapplying = asyncio.get_running_loop().create_task(self._reapply())

    async def _reapply(self) -> None:
        """Apply the pending clears and deletes, each ``retry_interval``, until all are done."""
        while self._pending and not self._closed:
            await asyncio.sleep(self.retry_interval)
            for name, (script, args) in list(self._pending.items()):
                if await self._call(self._change, script, name, *args) is FAILED:
                    break
                if self._pending.get(name) == (script, args):
                    del self._pending[name]
                self._forget()  # generations and copies are read afresh from the server
        self._reapplying = None

    async def _change(self, script: str, name: str, *args: str) -> Any:
        pool = self._client.connection_pool
        connection = await pool.get_connection()
        try:
            return await self._replicated(
                connection, self._client.parse_response, script, name, *args
            )
        finally:
            await pool.release(connection)

    async def _replicated(
        self, connection: Any, parse: Any, script: str, name: str, *args: str
    ) -> Any:
        """Run ``script`` on ``connection``, then WAIT for every connected replica."""
        try:
            await connection.send_packed_command(
                connection.pack_commands([("EVAL", script, 1, name, *args), ("ROLE",)])
            )
            result = await parse(connection, "EVAL")
            role = await parse(connection, "ROLE")
            replicas = len(role[2]) if _text(role[0]) == "master" else 0
            if replicas:
                wait = max(1, int(self.operation_timeout * 800))  # ms, inside the deadline
                await connection.send_command("WAIT", replicas, wait)
                acknowledged = int(await parse(connection, "WAIT"))
                if acknowledged < replicas:
                    raise NotReplicated(
                        f"{acknowledged} of {replicas} replicas acknowledged a clear or delete"
                    )
        except BaseException:
            # a reply may still be unread: this connection must not serve another call
            await connection.disconnect()
            raise
        return result

    async def close(self) -> None:
        if self._reapplying is not None:
            self._reapplying.cancel()
        await super().close()
        sentinel = getattr(self.backend, "sentinel", None)
        for server in getattr(sentinel, "sentinels", ()):
            try:
                await server.aclose()
            except Exception:  # noqa: BLE001, S110 - closing a dead connection is not an error
                pass


class ClusterStore(ReplicatedRedisStore):
    """:class:`RedisStore` on a Redis Cluster: entries hashed across the masters.

    Layout under ``namespace`` (``{...}`` is a Redis Cluster hash tag)::

        {ns}:g                       global generation (its own slot)
        {ns}:u:{<hmac(user)>}        one user's generation
        {ns}:e:{<hmac(user)>}:<hmac> an entry: the same slot as its user's generation
        {ns}:l:<hmac>                lease lock

    Notes
    -----
    A Lua script may only touch keys of one slot in a cluster, and the single-server
    ``FETCH`` reads the entry and both generations at once. Here an entry shares its
    user's hash tag, so entry and user generation are read (and the user generation
    created) by one script on the user's shard; users — and so entries — spread over
    every master. The global generation lives in one key of its own. While the store is
    subscribed it comes from the change notices (``PUBLISH`` reaches every node of a
    cluster, whichever shard the clear ran on), so a hit is still one ``GET``, or no
    round trip with ``local_cache``; otherwise it is read (or created) first, a second
    round trip.

    Each shard's master can fail over on its own; clears and deletes wait for that
    shard's replicas as on Sentinel (:class:`ReplicatedRedisStore`). The subscription is
    held on the node serving the channel's slot; if that node dies, the listener
    forgets what it knew and subscribes again, on the node redis-py's refreshed slot
    map names.
    """

    # KEYS: entry, user generation; ARGV: a fresh nonce, the global generation.
    FETCH_USER = """
local u = redis.call('GET', KEYS[2])
if not u then redis.call('SET', KEYS[2], ARGV[1], 'NX'); u = redis.call('GET', KEYS[2]) end
local v = redis.call('GET', KEYS[1])
local p = ARGV[2] .. ':' .. u .. '|'
if v and string.sub(v, 1, #p) == p then return v end
return {ARGV[2], u}
"""
    # KEYS: the global generation; ARGV: a fresh nonce. Read it, creating it if missing.
    GENERATION = """
local g = redis.call('GET', KEYS[1])
if not g then redis.call('SET', KEYS[1], ARGV[1], 'NX'); g = redis.call('GET', KEYS[1]) end
return g
"""

    def __init__(self, backend: BaseCache, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        for script in (self.FETCH_USER, self.GENERATION):
            self._sha[script] = _sha1(script)
        self._mapping = asyncio.Lock()

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """As :meth:`SharedStore._call`, loading redis-py's slot map first, one caller at a time.

        redis-py 8's ``RedisCluster`` loads its slot map lazily, inside the first commands;
        commands sent concurrently while it does fail on half-made connections
        ("'NoneType' object has no attribute 'writelines'"). Concurrent first callers
        (and callers after an error that made it reload) wait here for one load instead.
        """
        if self._client._initialize:
            async with self._mapping:
                if (
                    self._client._initialize
                    and await super()._call(self._client.initialize) is FAILED
                ):
                    return FAILED
        return await super()._call(fn, *args, **kwargs)

    def _user_tag(self, user: str) -> str:
        return "{" + self.codec.name("user", user) + "}"

    def _entry_name_uncached(self, key: Any) -> str:
        return f"{self._ns}:e:{self._user_tag(key.user)}:{self.codec.name(*key)}"

    def _user_name_uncached(self, user: str) -> str:
        return f"{self._ns}:u:{self._user_tag(user)}"

    async def _pubsub(self) -> Any:
        # redis-py picks the node serving the channel's slot from its slot map: load it
        async with self._mapping:
            await self._client.initialize()
        return self._client.pubsub()

    async def _fetch_stamped(self, entry: str, user: str) -> tuple[str | None, str]:
        generation = self._known.get(self._global_name) if self._live else None
        if generation is None:
            reply = await self._script(self.GENERATION, [self._global_name], next(self._nonces))
            generation = reply.decode()
        reply = await self._script(self.FETCH_USER, [entry, user], next(self._nonces), generation)
        if isinstance(reply, bytes):
            raw = reply.decode()
            return raw, raw.partition("|")[0]
        return None, ":".join(part.decode() for part in reply)

    async def _change(self, script: str, name: str, *args: str) -> Any:
        node = self._client.get_node_from_key(name)
        connection = node.acquire_connection()
        try:
            return await self._replicated(connection, node.parse_response, script, name, *args)
        except BaseException:
            # This call went to the node itself, past redis-py's own error handling, which
            # would reload the slot map: a dead master or a MOVED reply must do so too, or
            # the next clear or delete of that slot goes to the same node again.
            self._client._initialize = True
            raise
        finally:
            node.release(connection)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _sha1(script: str) -> str:
    import hashlib

    return hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis' script id
