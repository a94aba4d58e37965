"""One real hub with two replicas for the whole tests/serve package (each test uses its own users).

The hub exchanges tokens of the test identity provider (tests/oidc), so that the
exchange route is part of the contract too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..hubprocess import HubProcess
from ..oidc.server import HUB_CLIENT, OIDCProvider
from ..servers import RedisServer
from .replicas import Replica, replicated_hub

Setup = tuple[HubProcess, list[Replica]]
EXCHANGE = """
c.TokenExchange.issuer = {issuer!r}
c.TokenExchange.client_id, c.TokenExchange.client_secret = {client!r}
c.TokenExchange.allowed_audiences = ["jupyterhub"]
"""


@pytest.fixture(scope="package")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,
    oidc_provider: OIDCProvider,
    crypt_key: str,
) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp("replicated")
    exchange = EXCHANGE.format(issuer=oidc_provider.issuer, client=HUB_CLIENT)
    with replicated_hub(
        workdir, redis_server.url, crypt_key, "replicas", config=exchange
    ) as running:
        yield running
