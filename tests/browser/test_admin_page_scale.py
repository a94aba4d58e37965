"""The admin page on a hub of 10,000 minted tokens: it polls the stats, lists on demand, and
follows a reset that runs on to its end.

The hub's database is bulk-loaded (tests/bulk.py) while the hub runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from .. import bulk
from ..hubprocess import HubProcess
from .admin import SHOWN_WITHIN, admin_hub, admin_page

pytestmark = pytest.mark.e2e

USERS = 5_000


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, bulk.Loaded]]:
    workdir: Path = tmp_path_factory.mktemp("hub")
    with admin_hub(workdir) as hub:
        engine = create_engine(f"sqlite:///{workdir}/jupyterhub.sqlite")
        try:
            yield hub, bulk.load(engine, USERS, every=500)
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def page(loaded: tuple[HubProcess, bulk.Loaded], browser: Any) -> Any:
    return admin_page(browser, loaded[0])


def test_the_page_polls_the_stats_and_lists_on_demand(page: Any) -> None:
    from playwright.sync_api import expect

    caption = page.locator("#tc-tokens caption")
    expect(caption).to_have_text(f"Tokens 1–50 of {2 * USERS}")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.wait_for_timeout(7_000)  # two refreshes at least, and nothing changed
    assert len([u for u in asked if u.endswith("/api/token-cache/stats")]) >= 2
    assert not [u for u in asked if "/api/token-cache/tokens" in u]
    page.get_by_role("button", name="Refresh list").click()
    expect(caption).to_have_text(re.compile(r"^Tokens 1–50 of "))
    assert [u for u in asked if "/api/token-cache/tokens" in u]
    page.get_by_role("button", name="Next page").click()
    expect(caption).to_have_text(f"Tokens 51–100 of {2 * USERS}")


def test_a_reset_of_every_token_is_followed_to_its_end(
    loaded: tuple[HubProcess, bulk.Loaded], page: Any
) -> None:
    from playwright.sync_api import expect

    hub, tokens = loaded
    page.get_by_label("Also revoke their tokens in the hub").check()
    page.get_by_role("button", name="Reset all users…").click()
    page.get_by_role("dialog", name="Confirm reset").get_by_role(
        "button", name="Confirm reset"
    ).click()
    status = page.get_by_role("status")
    expect(status).to_have_text(re.compile(r"^Reset all users: revoking, \d+ token\(s\) so far"))
    expect(status).to_have_text(
        f"Reset all users: {2 * USERS} token(s) revoked.", timeout=4 * SHOWN_WITHIN
    )
    expect(page.locator("#tc-tokens caption")).to_have_text("No minted tokens")
    for token in tokens.sample.values():
        r = httpx.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {token}"})
        assert r.status_code == 403
