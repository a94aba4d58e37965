"""The upstream-token service outside a hub: auth states in a dict, the real test provider.

A user's handle is their name; their auth state is what GenericOAuthenticator keeps after
a real login at the provider (``OIDCProvider.login_state``), stamped as the hub's mixin
stamps a login. Saves are counted and copied, as a database write would be.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx

from jupyter_token_cache import TokenCache
from jupyter_token_cache.tokens.events import Event
from jupyter_token_cache.upstream.auth_state import session_of, stamped
from jupyter_token_cache.upstream.grants import TokenEndpoint
from jupyter_token_cache.upstream.service import UpstreamTokenService
from jupyter_token_cache.upstream.targets import UpstreamTokens
from jupyter_token_cache.upstream.verify import Provider

from ..oidc.server import HUB_LOGIN, OIDCProvider
from ..servers import MissingBinary, unavailable

TARGETS = {
    "s3": {"method": "resource", "resource": "urn:target:s3", "scopes": ["s3:read"]},
    "api": {"method": "exchange", "audience": "internal-api", "scopes": ["api:read"]},
    "s3-dependent": {"method": "globus-dependent", "resource_server": "s3"},
    "transfer": {"method": "globus", "resource_server": "transfer.api.globus.org"},
}


class States:
    """Auth states by user name (the hub keeps them encrypted in its database)."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any] | None] = {}
        self.saves = 0

    def name(self, user: Any) -> str:
        return str(user)

    async def session(self, user: Any) -> str | None:
        return session_of(self.states.get(user))

    async def load(self, user: Any) -> dict[str, Any] | None:
        return copy.deepcopy(self.states.get(user))

    async def save(self, user: Any, state: dict[str, Any]) -> None:
        self.saves += 1
        self.states[user] = copy.deepcopy(state)

    def log_in(self, provider: OIDCProvider, user: str) -> dict[str, Any]:
        """A real login of ``user`` at ``provider``, kept as the hub's mixin keeps one."""
        state = stamped(provider.login_state(user), now=time.time(), new=True)
        self.states[user] = state
        return state


def running_provider(**options: Any) -> Iterator[OIDCProvider]:
    """A provider with ``options`` (lifetimes, a store), stopped afterwards (for fixtures)."""
    try:
        server = OIDCProvider(**options).start()
    except MissingBinary as e:
        unavailable(e)
    yield server
    server.stop()


class Events:
    """An event sink that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def publish(self, events: Any) -> None:
        self.events.extend(events)


def service(
    provider: OIDCProvider, cache: TokenCache, **settings: Any
) -> tuple[UpstreamTokenService, States, Events]:
    """The service for ``provider`` (its endpoints from its discovery document)."""
    config = UpstreamTokens(enabled=True, issuer=provider.issuer, targets=TARGETS, **settings)
    http = httpx.AsyncClient(timeout=config.grant_timeout)
    discovery = Provider(config, http)

    async def endpoint(name: str) -> str:
        return await discovery.endpoint(name, config.timeout)

    states, events = States(), Events()
    endpoint_ = TokenEndpoint(
        http=http,
        endpoint=endpoint,
        client_id=HUB_LOGIN[0],
        client_secret=HUB_LOGIN[1],
        counts=Counter(),
    )
    return (
        UpstreamTokenService(
            settings=config, cache=cache, states=states, endpoint=endpoint_, events=events
        ),
        states,
        events,
    )
