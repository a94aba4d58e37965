"""The shared store on Redis: generations learnt from notifications, one GET per hit."""

from __future__ import annotations

import asyncio
import hashlib
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

    When notices may have been missed — before the subscription is confirmed, after it
    drops, until it is re-established — the store forgets what it knew and asks Redis
    with every lookup again. A generation learnt from such a lookup is kept only if no
    notice arrived while the lookup was under way, so a notice is never overwritten by
    an older read.
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

    def __init__(self, backend: BaseCache, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self._client = backend.client  # type: ignore[attr-defined]
        self._sha = {script: hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis' id
                     for script in (self.FETCH, self.CLEAR, self.RELEASE)}  # fmt: skip
        # The subscription holds one pooled connection; calls get the rest.
        self._slots = asyncio.Semaphore(max(1, self._client.connection_pool.max_connections - 1))
        self._channel = f"{self._ns}:generations"
        self._live = False
        self._known: OrderedDict[str, str] = OrderedDict()  # generation key -> nonce
        self._notices = 0  # bumps whenever what is known changes under a lookup
        self._listener: asyncio.Task[None] | None = None

    # -- notifications ------------------------------------------------------------------

    @property
    def notified(self) -> bool:
        """True while generations come from notifications (one GET per hit)."""
        return self._live

    def _listen_soon(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        """Stay subscribed to the generations channel, re-subscribing after failures."""
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        self._forget()  # whatever was learnt before may have missed notices
                        self._live = True
                    elif message["type"] == "message":
                        name, _, nonce = message["data"].decode().partition(" ")
                        self._learn(name, nonce)
                        self._notices += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the data path reports outages
                self.log.debug("Token cache notifications interrupted: %s", exc)
            finally:
                self._live = False
                self._forget()
                try:
                    await pubsub.aclose()
                except Exception:  # noqa: BLE001, S110 - the connection is gone anyway
                    pass
            await asyncio.sleep(self.retry_interval)

    def _forget(self) -> None:
        self._known.clear()
        self._notices += 1

    def _learn(self, name: str, nonce: str) -> None:
        self._known[name] = nonce
        if len(self._known) > self._opened_size:
            self._known.popitem(last=False)

    # -- lookups ------------------------------------------------------------------------

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
        reply = await self._script(self.FETCH, [entry, self._global_name, user], next(self._nonces))
        if isinstance(reply, bytes):
            raw = reply.decode()
            stamp = raw.partition("|")[0]
        else:
            raw, stamp = None, ":".join(part.decode() for part in reply)
        if self._live and self._notices == notices:
            generation, _, user_generation = stamp.partition(":")
            self._learn(self._global_name, generation)
            self._learn(user, user_generation)
        return raw, stamp

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
        done = await self._call(self._script, self.CLEAR, [name], nonce, self._channel)
        if done is FAILED:
            return False
        self._learn(name, nonce)  # our own notice may arrive after our next lookup
        self._notices += 1
        return True

    def _ttl(self, seconds: float) -> Any:
        # Redis takes milliseconds (aiocache uses PSETEX / PX for a float TTL).
        return round(seconds, 3) if seconds >= 0.001 else None

    async def _release(self, name: str, token: str) -> None:
        await self._script(self.RELEASE, [name], token)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except BaseException:  # noqa: BLE001, S110 - cancelled, or already failed
                pass
        self.drop()
        try:
            await self._client.aclose()  # aiocache's close() calls redis-py's deprecated close()
        except Exception:  # noqa: BLE001, S110 - closing a dead connection is not an error
            pass
