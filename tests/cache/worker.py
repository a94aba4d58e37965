"""One 'hub process' for the cross-process single-flight test (run as a script)."""

import asyncio
import json
import sys
import time

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache import CacheKey


async def main(settings: dict, callers: int, start_at: float) -> None:
    cache = TokenCache(**settings)
    creations = 0

    async def create():
        nonlocal creations
        creations += 1
        await asyncio.sleep(0.2)  # a mint that takes a while
        return {"token": f"minted-by-{id(cache)}-{time.time()}"}, time.time() + 600

    await cache.get(CacheKey("warm", "up"))  # connect before the start line
    await asyncio.sleep(max(0.0, start_at - time.time()))
    results = await asyncio.gather(
        *(
            cache.get_or_create(CacheKey("alice", "notebook", ("s",)), create)
            for _ in range(callers)
        )
    )
    stats = cache.stats()
    print(json.dumps({"creations": creations, "tokens": sorted({v["token"] for v, _ in results}),
                      "errors": stats["errors"]}))  # fmt: skip
    await cache.close()


asyncio.run(main(json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
