"""End to end: while the hub's event stream is cut, what a replica serves and what it refuses."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from ..servers import RedisServer
from ..times import until
from .conftest import Setup
from .replicas import Replica, post, replicated_hub, user_token

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


@pytest.fixture
def refusing(
    tmp_path: os.PathLike[str], redis_server: RedisServer, crypt_key: str
) -> Iterator[Setup]:
    with replicated_hub(
        tmp_path, redis_server.url, crypt_key, "cut", "--TokenCacheReplica.on_stream_cut=refuse"
    ) as running:
        yield running


def stream_connected(replica: Replica) -> bool:
    return bool(httpx.get(f"{replica.url}/health").json()["stream_connected"])


def test_with_refuse_a_cut_serves_what_was_cached_and_refuses_the_rest(refusing: Setup) -> None:
    hub, replicas = refusing
    credential = user_token(hub, "eve")["token"]
    cached = post(replicas[0].url, "notebook", credential).json()
    assert post(replicas[1].url, "notebook", credential).json()["token"] == cached["token"]
    assert hub.process is not None
    os.kill(hub.process.pid, signal.SIGSTOP)  # a frozen hub: its stream goes silent
    try:
        until(lambda: not any(stream_connected(r) for r in replicas), 10)
        for replica in replicas:
            # kept for CachedHubAuth.disconnected_ttl (30 s): the caller and its token
            assert post(replica.url, "notebook", credential).json()["token"] == cached["token"]
            start = time.monotonic()
            r = post(replica.url, "internal", credential, {"service": "dask"})
            assert (r.status_code, r.json()["message"]) == (
                503,
                "The hub's event stream is cut; try again shortly",
            )
            assert time.monotonic() - start < 1  # refused at once, not after a hub timeout
    finally:
        os.kill(hub.process.pid, signal.SIGCONT)
    until(lambda: all(stream_connected(r) for r in replicas), 10)
    assert post(replicas[1].url, "internal", credential, {"service": "dask"}).status_code == 200
