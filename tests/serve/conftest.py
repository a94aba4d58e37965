"""One real hub with two replicas for the whole tests/serve package (each test uses its own users)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..hubprocess import HubProcess
from ..servers import RedisServer
from .replicas import Replica, replicated_hub

Setup = tuple[HubProcess, list[Replica]]


@pytest.fixture(scope="package")
def setup(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, crypt_key: str
) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("replicated")
    with replicated_hub(workdir, redis_server.url, crypt_key, "replicas") as running:
        yield running
