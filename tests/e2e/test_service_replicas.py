"""End to end: two replicas of one service share sealed answers on Redis; both evict."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..hubprocess import HubProcess
from ..servers import MissingBinary, RedisServer, unavailable
from .services import ExternalService, api_token, external, hub_checks, services_hub

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


@pytest.fixture
def replicas(
    tmp_path: Path, own_redis: RedisServer, crypt_key: str
) -> Iterator[tuple[HubProcess, list[ExternalService]]]:
    token = secrets.token_hex(16)
    try:
        hub = services_hub(tmp_path, [], external("shared", token))
    except MissingBinary as e:
        unavailable(e)
    hub.start()
    settings = ["--AnswerCache.backend=redis", f"--AnswerCache.url={own_redis.url}",
                f"--AnswerCache.encryption_key={crypt_key}"]  # fmt: skip
    both = [ExternalService(hub, "shared", token, *settings) for _ in range(2)]
    try:
        for replica in both:
            replica.start()
        yield hub, both
    finally:
        for replica in both:
            replica.stop()
        hub.stop()


def test_an_answer_made_by_one_replica_is_a_hit_at_the_other_and_a_revocation_evicts_both(
    replicas: tuple[HubProcess, list[ExternalService]], own_redis: RedisServer
) -> None:
    hub, (a, b) = replicas
    made = api_token(hub, "alice")
    token, token_id = made["token"], made["id"]
    before = hub_checks(hub)
    assert a.get(token) == 200
    assert b.get(token) == 200
    assert hub_checks(hub) - before == 1, repr(
        (a.stats(), b.stats())
    )  # b found a's answer on Redis
    assert b.stats()["hits"] == 1 and b.stats().get("misses", 0) == 0
    for name, value in own_redis.dump().items():
        assert token not in name and token.encode() not in value, "plaintext token on Redis"
        assert b'"username"' not in value, "an unsealed answer on Redis"
    with hub.admin(direct=True) as admin:
        assert admin.delete(f"users/alice/tokens/{token_id}").status_code == 204
    start = time.monotonic()
    while a.get(token) == 200 or b.get(token) == 200:
        assert time.monotonic() - start < 1, "a replica still accepts the revoked token"
        time.sleep(0.01)
