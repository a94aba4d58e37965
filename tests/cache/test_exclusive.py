"""CacheEngine.exclusive and run_once: work that must not overlap, on every backend.

Two engines with different settings have stores of their own, as two processes would:
only the backend's lease keeps their work apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache import CacheKey, LeaseTimeout

KEY = CacheKey("alice", "upstream-refresh")


class Work:
    """Work that records how many runs overlap and in what order they ran."""

    def __init__(self, seconds: float = 0.02) -> None:
        self.seconds = seconds
        self.running = self.most = 0
        self.runs: list[int] = []

    async def __call__(self, n: int) -> int:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.seconds)
            self.runs.append(n)
            return n
        finally:
            self.running -= 1


async def test_work_never_overlaps_in_a_process_or_across_two(
    make_cache: Callable[..., TokenCache], backend: str
) -> None:
    here, there = make_cache(), make_cache(operation_timeout=4.9)  # "another process"
    assert here.store is not there.store
    work = Work()
    results = await asyncio.gather(
        *(
            cache.exclusive(KEY, lambda n=n: work(n), timeout=10)
            for n, cache in enumerate([here, there] * 5)
        )
    )
    assert results == list(range(10))  # each caller ran its own work
    assert sorted(work.runs) == list(range(10))
    # in one process the lock is enough; across stores only a shared backend's lease
    assert work.most == 1 or backend == "memory"
    assert len(here.store.locks) == 0  # nothing kept once nobody waits


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_a_lease_held_past_the_timeout_is_a_refusal_not_a_second_run(
    make_cache: Callable[..., TokenCache],
) -> None:
    here, there = make_cache(lock_timeout=5), make_cache(lock_timeout=5, operation_timeout=4.9)
    held = asyncio.Event()
    release = asyncio.Event()

    async def holding() -> None:
        held.set()
        await release.wait()

    first = asyncio.ensure_future(here.exclusive(KEY, holding, timeout=10))
    await held.wait()
    ran = False

    async def second() -> None:
        nonlocal ran
        ran = True

    with pytest.raises(LeaseTimeout):
        await there.exclusive(KEY, second, timeout=0.3)
    assert ran is False
    release.set()
    await first
    await there.exclusive(KEY, second, timeout=1)  # free again
    assert ran is True


async def test_run_once_shares_one_run(make_cache: Callable[..., TokenCache]) -> None:
    cache = make_cache()
    work = Work(0.05)
    answers = await asyncio.gather(*(cache.run_once(KEY, lambda: work(7)) for _ in range(50)))
    assert work.runs == [7] and sum(led for _, led in answers) == 1
    assert {result for result, _ in answers} == {7}
