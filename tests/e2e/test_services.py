"""End to end: the example service checks tokens with CachedHubAuth, as a process behind the proxy."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from ..hubprocess import HubProcess, flood
from .services import FAST, api_token, hub_checks, refused_within, running, service, whoami

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("services")
    with running(workdir, [service("whoami", *FAST), service("whoami-plain", plain=True)]) as hub:
        yield hub


def test_one_hub_call_per_new_token(hub: HubProcess) -> None:
    token = api_token(hub, "alice")["token"]
    before = hub_checks(hub)
    assert whoami(hub, "whoami", token) == 200
    assert whoami(hub, "whoami", token) == 200
    assert hub_checks(hub) - before == 1

    fresh = api_token(hub, "alice")["token"]
    before = hub_checks(hub)

    url = f"{hub.url}/services/whoami/"
    headers = {"Authorization": f"token {fresh}"}

    async def get(pool: httpx.AsyncClient, _: int) -> int:
        return (await pool.get(url, headers=headers)).status_code

    codes = asyncio.run(flood(get))
    assert len(codes) == 1000 and set(codes) == {200}
    assert hub_checks(hub) - before == 1


def test_a_garbage_token_costs_one_hub_call_per_negative_ttl(hub: HubProcess) -> None:
    before = hub_checks(hub)
    assert whoami(hub, "whoami", "not-a-token-" * 3) in (401, 403)
    assert whoami(hub, "whoami", "not-a-token-" * 3) in (401, 403)
    assert hub_checks(hub) - before == 1


def test_a_deleted_token_is_refused_at_once_where_plain_hub_auth_still_accepts_it(
    hub: HubProcess,
) -> None:
    made = api_token(hub, "alice")
    token, token_id = made["token"], made["id"]
    assert whoami(hub, "whoami", token) == 200
    assert whoami(hub, "whoami-plain", token) == 200
    with hub.admin() as admin:
        assert admin.delete(f"users/alice/tokens/{token_id}").status_code == 204
    assert refused_within(hub, token) < 1
    assert whoami(hub, "whoami-plain", token) == 200  # HubAuth's cache: for up to 5 minutes


def test_a_valid_token_without_the_access_scope_is_403_not_401(hub: HubProcess) -> None:
    """docs/services.md: 401 without a usable token, 403 for a token lacking the service's
    access scope (the example's get_login_url answered 401 before JupyterHub's 403)."""
    with hub.admin(direct=True) as admin:
        admin.post("users/alice")
        r = admin.post("users/alice/tokens", json={"scopes": ["read:users:name!user"]})
        assert r.status_code == 201, r.text
        narrow = r.json()["token"]
    for name in ("whoami", "whoami-plain"):
        r = httpx.get(f"{hub.url}/services/{name}/", headers={"Authorization": f"token {narrow}"})
        assert r.status_code == 403, (name, r.text)
        assert r.json()["message"] == "user alice is not allowed.", r.text
        assert whoami(hub, name, "not-a-token-" * 3) == 401
    assert narrow not in hub.log()
