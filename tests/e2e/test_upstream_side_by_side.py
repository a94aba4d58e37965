"""Side by side: oauthenticator's documented way of giving notebooks the user's tokens.

oauthenticator 17 ("Refreshing tokens from user sessions"): servers hold
``admin:auth_state!user`` and read the user's whole auth state from the hub's REST API
(``GET /hub/api/users/{name}``: JupyterHub 6's ``GET /hub/api/user`` leaves it null);
once ``auth_refresh_age`` has passed, each such request makes JupyterHub call
``refresh_user``, which refreshes once the access token has expired. Here that runs on a
plain GenericOAuthenticator (no token cache) against the same provider, which rotates
refresh tokens and revokes the whole grant when a spent one comes back. The same 100
requests at expiry from three servers of one user are counted: refreshes, tokens handed
out, whether the grant survived. tests/e2e/test_upstream_tokens.py runs them through the
token cache: one refresh, one token, the grant alive.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..hubprocess import HubProcess, running_hub
from ..oidc.server import GRANT_REVOKED, HUB_LOGIN, OIDCProvider
from ..upstream.outbound import running_provider
from .upstream import at_once, config, spawn

LIFETIME = 10
REFRESH = "POST /token refresh_token"
SERVERS = ["", "one", "two"]


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProvider]:
    # its userinfo takes a token 1 s past expiry (oidc-provider's own default is 15 s)
    yield from running_provider(hub_access_ttl=LIFETIME, clock_tolerance=1)


@pytest.fixture(scope="module")
def plain(
    tmp_path_factory: pytest.TempPathFactory, provider: OIDCProvider, crypt_key: str
) -> Iterator[tuple[HubProcess, list[str]]]:
    workdir = tmp_path_factory.mktemp("documented")
    with running_hub(
        workdir, config(workdir, provider, crypt_key, cached=False, refresh_age=1)
    ) as hub:
        provider.log_in(hub.url, "alice").close()
        probes = spawn(hub, "alice", SERVERS)
        yield hub, [probes[name]["api_token"] for name in SERVERS]


def read_state(hub: HubProcess, token: str) -> dict[str, Any]:
    """What a notebook does in the documented approach: the whole auth state, from the hub."""
    r = httpx.get(
        f"{hub.url}/hub/api/users/alice", headers={"Authorization": f"token {token}"}, timeout=60
    )
    assert r.status_code == 200, r.text
    return r.json()["auth_state"]  # type: ignore[no-any-return]


def test_the_documented_approach_at_expiry(
    plain: tuple[HubProcess, list[str]], provider: OIDCProvider
) -> None:
    hub, servers = plain
    state = read_state(hub, servers[0])
    assert state["refresh_token"] and state["id_token"]  # every notebook package can read them
    time.sleep(LIFETIME + provider.clock_tolerance + 2)  # expired, and userinfo refuses it
    refreshes, revoked = provider.requests(REFRESH), provider.requests(GRANT_REVOKED)
    failed = provider.requests(f"{REFRESH} 400")
    url = f"{hub.url}/hub/api/users/alice"
    answers = at_once(hub, [("GET", url, servers[n % 3], None) for n in range(100)])
    # a refresh the provider refuses makes JupyterHub ask for a new login: on 5.5 some of
    # the hundred are then answered 403, on 6.x the race usually ends before they are
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 403}, statuses
    states = [r.json()["auth_state"] for r in answers if r.status_code == 200]
    made = provider.requests(REFRESH) - refreshes
    refused = provider.requests(f"{REFRESH} 400") - failed
    grant_revoked = provider.requests(GRANT_REVOKED) - revoked
    tokens = {s["access_token"] for s in states}
    after = httpx.get(url, headers={"Authorization": f"token {servers[0]}"}, timeout=60)
    final = after.json()["auth_state"]["access_token"] if after.status_code == 200 else None
    alive = final is not None and (
        httpx.post(f"{provider.url}/token/introspection", data={"token": final}, auth=HUB_LOGIN)
        .json()
        .get("active")
    )
    print(
        f"\ndocumented approach, 100 requests at expiry from 3 servers: {made} refreshes "
        f"({refused} refused), {statuses.count(403)} requests refused by the hub, "
        f"{len(tokens)} distinct access tokens handed out, grant revoked "
        f"{grant_revoked} time(s); the token in the auth state afterwards active: {alive}"
    )
    assert made >= 1
