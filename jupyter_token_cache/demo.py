"""A runnable tour of the token cache: ``python -m jupyter_token_cache.demo``.

Mints fake tokens through a TokenCache on the memory backend and shows which requests
were served from the cache, one mint under a stampede, and the statistics.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from . import TokenCache
from .cache import CacheKey


async def main() -> None:
    cache = TokenCache(backend="memory", max_size=1000)
    minted = 0

    async def mint() -> tuple[dict[str, object], float]:
        nonlocal minted
        minted += 1
        await asyncio.sleep(0.05)  # what a round trip to the hub's token API costs
        lifetime = 3600
        return {"token": secrets.token_hex(16), "lifetime": lifetime}, time.time() + lifetime

    key = CacheKey("demo-user", "notebook", ("session-1",))
    for attempt in range(3):
        value, created = await cache.get_or_create(key, mint)
        print(f"request {attempt + 1}: {'minted' if created else 'served from cache'}")
    await asyncio.gather(*(cache.get_or_create(CacheKey("demo-user", "internal", ("dask",)), mint)
                           for _ in range(100)))  # fmt: skip
    print(f"100 concurrent requests for a new key: {minted - 1} mint(s)")
    print("stats:", {k: v for k, v in cache.stats().items() if k != "by_kind"})
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
