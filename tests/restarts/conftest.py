"""The restart tests: a whole site (site.py) per module, every process stopped, killed and frozen.

Apart from tests/e2e so that CI runs them once, on the newest JupyterHub: what they test
is this project's trust rule across restarts, which the hub and end-to-end tests check
again on JupyterHub 5.5 piece by piece.
"""

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
