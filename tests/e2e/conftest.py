"""Fixtures of the end-to-end tests: a whole site (tests/e2e/site.py) per module that asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..servers import RedisServer
from .site import Site, site


@pytest.fixture(scope="module")
def whole_site(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, crypt_key: str
) -> Iterator[Site]:
    """The hub, two replicas and a CachedHubAuth service on one Redis, for the module."""
    with site(tmp_path_factory.mktemp("site"), redis_server.url, crypt_key) as running:
        yield running
