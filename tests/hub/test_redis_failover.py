"""The hub's notebook route on Redis Sentinel and Cluster while a master is SIGKILLed under load.

1,000 ``POST /hub/api/token-cache/notebook`` at concurrency 10 from 20 users; the master
dies a second in. Figures printed: answers by status (all 200: the cache fails open),
when caching is back after the promotion, and that no token revoked by an admin reset
(``DELETE /hub/api/token-cache/users/{name}?revoke=true``) during the failover window is
handed out again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import pytest
from traitlets.config import Config

from ..servers import RedisClusterSet, SentinelSet
from .conftest import Hub

USERS = [f"fo{i}" for i in range(20)]


@pytest.fixture(params=["sentinel", "cluster"])
def redis_set(request: pytest.FixtureRequest) -> SentinelSet | RedisClusterSet:
    return request.getfixturevalue(f"own_redis_{request.param}")


@pytest.fixture
def hub_config(
    hub_config: Config, redis_set: SentinelSet | RedisClusterSet, crypt_key: str
) -> Config:
    hub_config.TokenCache.backend = "redis"
    hub_config.TokenCache.url = redis_set.url
    hub_config.TokenCache.encryption_key = crypt_key
    return hub_config


def kill_a_master(redis_set: SentinelSet | RedisClusterSet) -> Callable[[], float]:
    """SIGKILL a master; return what waits for its successor (and says when)."""
    if isinstance(redis_set, SentinelSet):
        old_port = redis_set.master_port()
        redis_set.kill_master()
        return lambda: redis_set.wait_for_promotion(old_port)
    master = redis_set.masters()[0]
    heir = redis_set.replica_of(master)
    master.kill()
    return lambda: redis_set.wait_for_promotion(heir)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("hub_db", ["sqlite"], indirect=True)
async def test_master_killed_under_notebook_load(
    hub: Hub, redis_set: SentinelSet | RedisClusterSet
) -> None:
    parents = {user: hub.token(user) for user in USERS}
    admin = hub.token("admin", admin=True)
    answers: list[tuple[float, str, int, str | None, bool]] = []

    async def worker(n: int) -> None:
        for i in range(n, 1000, 10):
            user = USERS[i % len(USERS)]
            started = time.monotonic()
            r = await hub.post("notebook", parents[user], {})
            body = r.json() if r.status_code == 200 else {}
            answers.append((started, user, r.status_code, body.get("token"), body.get("cached")))
            await asyncio.sleep(0.08)

    load = asyncio.ensure_future(asyncio.gather(*(worker(n) for n in range(10))))
    await asyncio.sleep(1.0)
    killed = time.monotonic()
    wait_promoted = kill_a_master(redis_set)
    # An admin revokes two users' tokens during the failover window.
    revoked: dict[str, tuple[set[str], float]] = {}
    for user in USERS[:2]:
        tokens = {t for s, u, _, t, _ in answers if u == user and t}
        assert tokens, f"{user} has no token yet"
        r = await hub.api("DELETE", f"token-cache/users/{user}?revoke=true", admin)
        assert r.status_code == 200 and r.json()["revoked"] >= 1, r.text
        revoked[user] = (tokens, time.monotonic())
    promoted = await asyncio.to_thread(wait_promoted)
    await load

    statuses = Counter(status for _, _, status, _, _ in answers)
    back = min((s for s, _, status, _, cached in answers if cached and s >= promoted), default=None)
    print(
        f"\nhub on {type(redis_set).__name__}: {len(answers)} answers {dict(statuses)}; new master "
        f"{promoted - killed:.2f} s after the kill; cached answers again "
        + (f"{back - promoted:.2f} s after the promotion" if back is not None else "never")
    )
    assert statuses == {200: 1000}
    assert back is not None and back - promoted < 5
    for user, (tokens, at) in revoked.items():
        served = [t for s, u, _, t, _ in answers if u == user and s >= at and t in tokens]
        assert not served, f"a token of {user} revoked during the failover was handed out again"
