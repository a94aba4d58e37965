"""The shared store on Redis: generations learnt from notifications, one GET per hit."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from typing import Any

from aiocache.base import BaseCache

from .shared import FAILED, SharedStore
from .store import CacheKey

try:
    from redis.exceptions import NoScriptError
except ImportError:  # pragma: no cover - no redis extra
    NoScriptError = None  # type: ignore[assignment,misc]


class RedisStore(SharedStore):
    """Entries on Redis (layout as :class:`SharedStore`), with clears published.

    Notes
    -----
    A lookup must compare an entry's stamp with the current generations. Asking Redis
    for them with every lookup (a Lua script reading entry and generations at once)
    costs ~15% over a plain GET. Instead every clear publishes its new generation on
    the namespace's channel, in the same script that sets it, and each process keeps
    the generations it has seen: while subscribed, a hit is one GET and a clear made by
    any process is seen as soon as its notice arrives (PingGateway evicts revoked
    tokens on notification the same way).

    With ``local_cache`` the store goes one step further, as PingGateway's cache does
    with revocation notices: it keeps a copy of each entry it has read, and every write
    and delete (by any process) is announced on the same channel, in the script that
    makes it, so copies are evicted when the entry changes anywhere. While subscribed, a
    hit whose copy matches the current generations needs no round trip at all.

    When notices may have been missed — before the subscription is confirmed, after it
    drops, until it is re-established — the store forgets what it knew (generations and
    copies) and asks Redis with every lookup again. Anything learnt from a lookup is kept
    only if no notice arrived while the lookup was under way, so a notice is never
    overwritten by an older read.
    """

    # KEYS: entry, global generation, user generation; ARGV: a fresh nonce.
    # Returns the entry when its stamp is current, else {global, user} generations.
    FETCH = """
local g = redis.call('GET', KEYS[2])
if not g then redis.call('SET', KEYS[2], ARGV[1], 'NX'); g = redis.call('GET', KEYS[2]) end
local u = redis.call('GET', KEYS[3])
if not u then redis.call('SET', KEYS[3], ARGV[1], 'NX'); u = redis.call('GET', KEYS[3]) end
local v = redis.call('GET', KEYS[1])
local p = g .. ':' .. u .. '|'
if v and string.sub(v, 1, #p) == p then return v end
return {g, u}
"""
    # KEYS: the generation key; ARGV: new nonce, channel. Set and announce atomically.
    CLEAR = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], KEYS[1] .. ' ' .. ARGV[1])
return 1
"""
    RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
    # KEYS: the entry; ARGV: value, TTL in ms, channel, writer. Write and announce it.
    WRITE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], KEYS[1] .. ' ~' .. ARGV[4])
return 1
"""
    # KEYS: the entry; ARGV: channel, writer. Delete and announce it.
    DELETE = """
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], KEYS[1] .. ' ~' .. ARGV[2])
return n
"""

    def __init__(
        self, backend: BaseCache, *, local_cache: bool = False, connections: int, **kwargs: Any
    ) -> None:
        super().__init__(backend, connections=connections, **kwargs)
        self._client = backend.client
        self._sha = {script: hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis' id
                     for script in (self.FETCH, self.CLEAR, self.RELEASE, self.WRITE, self.DELETE)}  # fmt: skip
        self.local_cache = local_cache
        self._origin = secrets.token_hex(6)  # tells this store's change notices from others'
        # entry name -> (stamp, value, deadline): copies evicted by change notices
        self._copies: OrderedDict[str, tuple[str, Any, float]] = OrderedDict()
        # The subscription holds one pooled connection; calls get the rest.
        self._slots = asyncio.Semaphore(max(1, connections - 1))
        self._channel = f"{self._ns}:generations"
        self._live = False
        self._known: OrderedDict[str, str] = OrderedDict()  # generation key -> nonce
        self._notices = 0  # bumps whenever what is known changes under a lookup
        self._listener: asyncio.Task[None] | None = None
        self._closed = False

    # -- notifications ------------------------------------------------------------------

    @property
    def notified(self) -> bool:
        """True while generations come from notifications (one GET per hit)."""
        return self._live

    def _listen_soon(self) -> None:
        if self._closed:
            return
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        """Stay subscribed to the generations channel, re-subscribing after failures."""
        while not self._closed:
            pubsub = None
            try:
                pubsub = await self._pubsub()
                await pubsub.subscribe(self._channel)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        self._forget()  # whatever was learnt before may have missed notices
                        self._live = True
                    elif message["type"] == "message":
                        name, _, nonce = message["data"].decode().partition(" ")
                        if not nonce.startswith("~"):
                            self._learn(name, nonce)
                        elif nonce[1:] != self._origin:  # an entry changed elsewhere
                            self._copies.pop(name, None)
                        else:  # our own change, already applied here
                            continue
                        self._notices += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the data path reports outages
                self.log.debug("Token cache notifications interrupted: %s", exc)
            finally:
                self._live = False
                self._forget()
                try:
                    if pubsub is not None:
                        await pubsub.aclose()
                except Exception:  # noqa: BLE001, S110 - the connection is gone anyway
                    pass
            if not self._closed:
                await asyncio.sleep(self.retry_interval)

    async def _pubsub(self) -> Any:
        """A new pub/sub client of the server (or node) the notices are heard on."""
        return self._client.pubsub()

    def _forget(self) -> None:
        self._known.clear()
        self._copies.clear()
        self._notices += 1

    def _learn(self, name: str, nonce: str) -> None:
        self._known[name] = nonce
        if len(self._known) > self._opened_size:
            self._known.popitem(last=False)

    # -- lookups ------------------------------------------------------------------------

    async def get(self, key: CacheKey) -> tuple[Any, Any]:
        if not (self.local_cache and self._live):
            return await super().get(key)
        name = self._entry_name(key)
        copy = self._copies.get(name)
        if copy is not None:
            stamp, value, deadline = copy
            generation = self._known.get(self._global_name)
            user_generation = self._known.get(self._user_name(key.user))
            if deadline > time.time() and stamp == f"{generation}:{user_generation}":
                self._copies.move_to_end(name)
                return value, None
            del self._copies[name]
        notices = self._notices
        value, stamp = await super().get(key)
        if value is not None and self._notices == notices and self._live:
            self._keep(name, value)
        return value, stamp

    def _keep(self, name: str, value: Any) -> None:
        """Copy a current entry: its stamp is the generations known now."""
        opened = self._last_opened
        if opened is None or opened[0] != name:
            return
        _, expires_at, stamp = opened
        deadline = (
            time.time() + self.ttl
            if expires_at is None
            else min(expires_at, time.time() + self.ttl)
        )
        self._copies[name] = (stamp, value, deadline)
        if len(self._copies) > self._opened_size:
            self._copies.popitem(last=False)

    async def _fetch(self, key: CacheKey) -> tuple[str | None, str | None]:
        entry, user = self._entry_name(key), self._user_name(key.user)
        if self._live:
            generation = self._known.get(self._global_name)
            user_generation = self._known.get(user)
            if generation is not None and user_generation is not None:
                stamp = f"{generation}:{user_generation}"
                raw = await self._client.execute_command("GET", entry)
                if raw is not None:
                    raw = raw.decode()
                    if raw.startswith(stamp) and raw[len(stamp) : len(stamp) + 1] == "|":
                        return raw, stamp
                return None, stamp
        else:
            self._listen_soon()
        notices = self._notices
        raw, stamp = await self._fetch_stamped(entry, user)
        if self._live and self._notices == notices:
            generation, _, user_generation = stamp.partition(":")
            self._learn(self._global_name, generation)
            self._learn(user, user_generation)
        return raw, stamp

    async def _fetch_stamped(self, entry: str, user: str) -> tuple[str | None, str]:
        """The entry if current, and the current stamp, asked of Redis in one script."""
        reply = await self._script(self.FETCH, [entry, self._global_name, user], next(self._nonces))
        if isinstance(reply, bytes):
            raw = reply.decode()
            return raw, raw.partition("|")[0]
        return None, ":".join(part.decode() for part in reply)

    async def _script(self, script: str, keys: list[str], *args: str) -> Any:
        """EVALSHA, loading the script once if the server does not know it.

        Called directly rather than through redis-py's ``Script`` helper, which costs
        ~20 µs a call on top of the round trip.
        """
        try:
            return await self._client.execute_command(
                "EVALSHA", self._sha[script], len(keys), *keys, *args
            )
        except NoScriptError:
            await self._client.script_load(script)
            return await self._client.execute_command(
                "EVALSHA", self._sha[script], len(keys), *keys, *args
            )

    async def clear(self, user: str | None = None) -> bool:
        name = self._global_name if user is None else self._user_name(user)
        nonce = next(self._nonces)
        done = await self._call(self._change, self.CLEAR, name, nonce, self._channel)
        if done is FAILED:
            self._unconfirmed(self.CLEAR, name, nonce, self._channel)
            return False
        self._learn(name, nonce)  # our own notice may arrive after our next lookup
        self._notices += 1
        return True

    async def _change(self, script: str, name: str, *args: str) -> Any:
        """Run a clear or a delete (one key); replicated topologies wait for a replica."""
        return await self._script(script, [name], *args)

    def _unconfirmed(self, script: str, name: str, *args: str) -> None:
        """A clear or delete that failed; on one server it is simply not done."""

    def _ttl(self, seconds: float) -> Any:
        # Redis takes milliseconds (aiocache uses PSETEX / PX for a float TTL).
        return round(seconds, 3) if seconds >= 0.001 else None

    async def _write(self, name: str, text: str, ttl: Any) -> None:
        self._copies.pop(name, None)
        self._notices += 1  # a lookup under way may have read the old value: keep no copy of it
        await self._script(
            self.WRITE, [name], text, str(max(1, int(ttl * 1000))), self._channel, self._origin
        )

    def forget(self, key: CacheKey) -> bool:
        self._copies.pop(self._entry_name(key), None)
        self._notices += 1
        return False

    async def delete(self, key: CacheKey) -> bool:
        name = self._entry_name(key)
        self.forget(key)
        deleted = await self._call(self._change, self.DELETE, name, self._channel, self._origin)
        if deleted is FAILED:
            self._unconfirmed(self.DELETE, name, self._channel, self._origin)
            return False
        return deleted not in (0, None, False)

    def channel(self, topic: str) -> str:
        """The Redis channel of ``topic`` in this namespace."""
        return f"{self._ns}:{topic}"

    async def announce(self, topic: str, payload: dict[str, Any]) -> bool:
        """PUBLISH ``payload`` on ``{namespace}:{topic}``, Fernet-sealed like every value here."""
        sent = await self._call(self._client.publish, self.channel(topic), self.codec.seal(payload))
        return sent is not FAILED

    async def _release(self, name: str, token: str) -> None:
        await self._script(self.RELEASE, [name], token)

    async def close(self) -> None:
        """Stop listening and close the connections, waiting a bounded time for each."""
        self._closed = True  # no new listener, and a running one stops at its next turn
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait({self._listener}, timeout=self.operation_timeout + 1)
            if not self._listener.done():  # a client library that swallows cancellation
                self.log.warning("Token cache notification listener did not stop; leaving it")
        self.drop()
        self._copies.clear()
        try:
            # aiocache's close() calls redis-py's deprecated close()
            await asyncio.wait_for(self._client.aclose(), self.operation_timeout + 1)
        except Exception:  # noqa: BLE001, S110 - closing a dead or stuck connection is not an error
            pass
