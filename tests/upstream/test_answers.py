"""CachedAnswers: the one rule for caching an authority's answers, on every backend."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache.answers import CachedAnswers, Unavailable


class Authority:
    """An ``ask`` that counts its calls and answers what it is told to."""

    def __init__(self, answer: dict[str, Any], delay: float = 0.0) -> None:
        self.answer = answer
        self.delay = delay
        self.calls = self.inflight = self.peak = 0

    async def __call__(self, token: str, timeout: float) -> dict[str, Any]:
        self.calls += 1
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.inflight -= 1
        return dict(self.answer)


def answers(cache: TokenCache, authority: Authority, **overrides: Any) -> CachedAnswers:
    settings: dict[str, Any] = dict(cache=cache, kind="test", ask=authority, ttl=30.0,
                                    negative_ttl=0.3, calls=asyncio.Semaphore(10), timeout=2.0,
                                    counts=Counter(), authority="the authority", prefix="authority")  # fmt: skip
    return CachedAnswers(**{**settings, **overrides})


async def test_concurrent_checks_of_one_token_ask_once(
    make_cache: Callable[..., TokenCache],
) -> None:
    authority = Authority({"active": True, "sub": "alice"}, delay=0.05)
    checks = answers(make_cache(), authority)
    results = await asyncio.gather(*(checks.check("token-1") for _ in range(200)))
    assert authority.calls == 1
    assert sum(asked for _, asked in results) == 1
    assert {answer["sub"] for answer, _ in results} == {"alice"}
    assert (await checks.check("token-1"))[1] is False and authority.calls == 1


async def test_an_active_answer_never_outlives_the_token(
    make_cache: Callable[..., TokenCache],
) -> None:
    authority = Authority({"active": True, "exp": time.time() + 1.2})
    checks = answers(make_cache(), authority)
    await checks.check("t")
    await checks.check("t")
    assert authority.calls == 1
    await asyncio.sleep(1.5)
    await checks.check("t")
    assert authority.calls == 2  # the token's exp ended the entry, not the 30 s ttl


async def test_inactive_answers_are_kept_for_negative_ttl(
    make_cache: Callable[..., TokenCache],
) -> None:
    authority = Authority({"active": False, "anything": "else"})
    checks = answers(make_cache(), authority, negative_ttl=3.0)  # memcached counts whole seconds
    assert (await checks.check("bad"))[0] == {"active": False}
    await checks.check("bad")
    assert authority.calls == 1
    await asyncio.sleep(3.5)
    await checks.check("bad")
    assert authority.calls == 2


async def test_a_hanging_authority_is_unavailable_within_the_timeout_and_nothing_is_cached(
    make_cache: Callable[..., TokenCache],
) -> None:
    authority = Authority({"active": True}, delay=30)
    counts: Counter[str] = Counter()
    checks = answers(
        make_cache(), authority, timeout=0.3, counts=counts, calls=asyncio.Semaphore(2)
    )
    started = time.monotonic()
    results = await asyncio.gather(
        *(checks.check(f"t{i}") for i in range(6)), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results)
    assert time.monotonic() - started < 1.0
    # each refused: waiting for a slot (busy) or in a call (errors); never more than 2 calls
    assert counts["authority_busy"] + counts["authority_errors"] == 6
    assert authority.peak == 2
    authority.delay = 0
    assert (await checks.check("t0"))[0]["active"] is True  # recovered: no refusal was cached


async def test_the_cache_key_is_an_hmac_never_the_token(
    make_cache: Callable[..., TokenCache],
) -> None:
    checks = answers(make_cache(), Authority({"active": True}))
    key = checks.key("secret-token-value")
    assert "secret-token-value" not in repr(key)
    assert key == checks.key("secret-token-value") != checks.key("another")
