"""Profile the hit path in-process: ``python -m benchmarks.profile_hit [N]``.

A MockHub with the token cache (in-memory proxy) and N notebook-token hits through HTTP,
under pyinstrument; prints the profile's top lines. The client shares the event loop,
so only the server-side frames are of interest.
"""

from __future__ import annotations

import asyncio
import sys

import httpx
from jupyterhub.tests.mocking import MockHub, MockPAMAuthenticator
from pyinstrument import Profiler
from traitlets.config import Config

from jupyter_token_cache import with_token_cache
from tests.hub.memory_proxy import MemoryProxy


async def main(n: int) -> None:
    config = Config()
    config.JupyterHub.authenticator_class = with_token_cache(MockPAMAuthenticator)
    config.JupyterHub.proxy_class = MemoryProxy
    config.JupyterHub.log_level = "WARN"
    app = MockHub.instance(config=config)
    app.log_level = 30
    await app.initialize([])
    await app.start()
    user = app.users[app.db.query(__import__("jupyterhub").orm.User).filter_by(name="user").one()]
    token = user.new_api_token()
    async with httpx.AsyncClient(base_url=app.hub.url, headers={"Authorization": f"token {token}"}) as http:
        for route in ("api/token-cache/notebook", "api/user"):
            call = (lambda r=route: http.post(r, json={})) if "notebook" in route else (lambda r=route: http.get(r))
            for _ in range(200):
                await call()
            profiler = Profiler(async_mode="disabled", interval=0.0002)
            profiler.start()
            for _ in range(n):
                await call()
            profiler.stop()
            print(f"==== {route} x{n}")
            print(profiler.output_text(unicode=False, show_all=False, short_mode=False)[:9000])
    stopped = app.stop()
    if asyncio.iscoroutine(stopped):
        await stopped


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
