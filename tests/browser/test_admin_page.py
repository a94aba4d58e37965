"""The admin page (/hub/token-cache) in a real browser, against the real ``jupyterhub`` command.

Debian's chromium, driven by Playwright (never ``playwright install``: that downloads a
browser). One hub and one browser for the module; the tests run in order and share the
admin's login. Set ``UPDATE_SCREENSHOTS=1`` to write docs/_static/admin-page.png, and
``CHROMIUM`` to use another Chromium or Chrome binary than /usr/bin/chromium. A missing
browser fails the tests under CI=true and skips them elsewhere, like any missing server.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..e2e.services import api_token
from ..hubprocess import ROOT, HubProcess
from .admin import SHOWN_WITHIN, admin_hub, admin_page, ask, counter, log_in

pytestmark = pytest.mark.e2e

SCREENSHOT = ROOT / "docs" / "_static" / "admin-page.png"
SERVICES = 'c.TokenCache.services = {"dask": {"scopes": ["read:users!user"], "lifetime": 3600}}\n'


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    with admin_hub(tmp_path_factory.mktemp("hub"), SERVICES) as hub:
        yield hub


@pytest.fixture(scope="module")
def page(hub: HubProcess, browser: Any) -> Any:
    return admin_page(browser, hub)


@pytest.fixture(scope="module")
def alice(hub: HubProcess) -> dict[str, str]:
    return api_token(hub, "alice")


def test_counters_move_and_tokens_are_listed(
    page: Any, hub: HubProcess, alice: dict[str, str]
) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Token cache", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Token cache")).to_be_visible()  # in the nav bar
    expect(page.locator("#tc-backend")).to_have_text("memory")
    expect(page.locator("#tc-health")).to_have_text("available")
    mints, hits = counter(page, "mints"), counter(page, "hits")

    issued = ask(hub, alice["token"])  # a miss and a mint
    assert ask(hub, alice["token"])["token"] == issued["token"]  # a hit
    expect(page.locator("#tc-mints")).to_have_text(str(mints + 1), timeout=SHOWN_WITHIN)
    expect(page.locator("#tc-hits")).to_have_text(str(hits + 1), timeout=SHOWN_WITHIN)
    expect(page.locator("#tc-hit-rate")).to_have_text(re.compile(r"^\d+\.\d %$"))
    expect(page.locator("#tc-chart polyline.tc-mints")).to_have_count(1, timeout=SHOWN_WITHIN)

    ask(hub, alice["token"], "internal", service="dask")
    ask(hub, api_token(hub, "bob")["token"])
    rows = page.locator("#tc-tokens tbody tr")
    alices = page.locator("#tc-tokens tbody tr[data-user=alice]")
    expect(rows).to_have_count(3, timeout=SHOWN_WITHIN)
    expect(alices).to_have_count(2)
    expect(page.locator("#tc-tokens caption")).to_have_text("Tokens 1–3 of 3")
    assert issued["token"] not in page.content(), "the page shows a token"
    shot = hub.workdir / "admin-page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copyfile(shot, SCREENSHOT)

    # the filters: by kind, by service, by user
    page.get_by_label("Kind").select_option("internal")
    page.get_by_role("button", name="Apply filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("dask")
    page.get_by_label("Kind").select_option("")
    page.get_by_label("Service").fill("nothing-by-this-name")
    page.get_by_role("button", name="Apply filter").click()
    expect(rows).to_have_count(0)
    expect(page.locator("#tc-tokens caption")).to_have_text("No minted tokens match the filter")
    page.get_by_label("Service").fill("")
    page.get_by_label("Filter by user").fill("bob")
    page.get_by_label("Filter by user").press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("notebook")
    page.get_by_label("Filter by user").fill("")
    page.get_by_role("button", name="Apply filter").click()
    expect(rows).to_have_count(3)


def test_reset_one_user_with_revoke_from_the_keyboard(
    page: Any, hub: HubProcess, alice: dict[str, str]
) -> None:
    from playwright.sync_api import expect

    issued = ask(hub, alice["token"])
    rows = page.locator("#tc-tokens tbody tr[data-user=alice]")
    expect(rows).to_have_count(2, timeout=SHOWN_WITHIN)

    # labelled controls, reached and worked with the keyboard alone
    page.get_by_label("User to reset").focus()
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Also revoke their tokens in the hub")).to_be_focused()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Reset user…")).to_be_focused()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Confirm reset")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("revoke")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(dialog.get_by_role("button", name="Confirm reset")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()

    expect(page.get_by_role("status")).to_have_text("Reset user alice: 2 token(s) revoked.")
    expect(rows).to_have_count(0, timeout=SHOWN_WITHIN)
    expect(page.locator("#tc-tokens tbody tr[data-user=bob]")).to_have_count(1)
    refused = httpx.get(
        f"{hub.url}/hub/api/user", headers={"Authorization": f"token {issued['token']}"}
    )
    assert refused.status_code == 403
    # alice's own API token (not minted by the cache) still works
    kept = httpx.get(
        f"{hub.url}/hub/api/user", headers={"Authorization": f"token {alice['token']}"}
    )
    assert kept.status_code == 200


def test_tokens_come_fifty_to_a_page(page: Any, hub: HubProcess) -> None:
    from playwright.sync_api import expect

    with hub.admin(direct=True) as api:
        api.post("users/carol")
        for _ in range(51):  # each API token is a session of its own: a notebook token each
            ask(hub, api.post("users/carol/tokens", json={}).json()["token"])
    page.get_by_label("Filter by user").fill("carol")
    page.get_by_role("button", name="Apply filter").click()
    caption = page.locator("#tc-tokens caption")
    expect(caption).to_have_text("Tokens 1–50 of 51")
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()
    page.get_by_role("button", name="Next page").click()
    expect(caption).to_have_text("Tokens 51–51 of 51")
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.get_by_role("button", name="Previous page").click()
    expect(caption).to_have_text("Tokens 1–50 of 51")


def test_cancel_resets_nothing(page: Any, hub: HubProcess, alice: dict[str, str]) -> None:
    from playwright.sync_api import expect

    issued = ask(hub, alice["token"])
    page.get_by_role("button", name="Reset all users…").click()
    dialog = page.get_by_role("dialog", name="Confirm reset")
    expect(dialog).to_contain_text("every user")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    ok = httpx.get(f"{hub.url}/hub/api/user", headers={"Authorization": f"token {issued['token']}"})
    assert ok.status_code == 200


def test_static_files_types_and_caching(page: Any, hub: HubProcess) -> None:
    script = page.locator("script[src*='token-cache/static/token-cache.js']").get_attribute("src")
    css = page.locator("link[href*='token-cache/static/token-cache.css']").get_attribute("href")
    assert "?v=" in script and "?v=" in css
    r = httpx.get(f"{hub.url}{script}")
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        ("text/javascript", "application/javascript")
    )
    assert "max-age=31536000" in r.headers["cache-control"]
    assert r.headers["x-content-type-options"] == "nosniff"
    r = httpx.get(f"{hub.url}{css}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    unversioned = httpx.get(f"{hub.url}{css.split('?')[0]}")
    assert unversioned.status_code == 200 and "cache-control" not in unversioned.headers
    assert httpx.get(f"{hub.url}/hub/token-cache/static/../page.py").status_code in (403, 404)


def test_visitors_log_in_first(hub: HubProcess) -> None:
    r = httpx.get(f"{hub.url}/hub/token-cache")
    assert r.status_code == 302 and "/hub/login" in r.headers["location"]


def test_no_request_leaves_the_hub(page: Any, hub: HubProcess, browser: Any) -> None:
    assert browser.requested, "the browser asked for nothing"
    elsewhere = [url for url in browser.requested if not url.startswith(f"{hub.url}/")]
    assert not elsewhere, f"requests to another origin: {elsewhere}"


def test_users_without_the_scopes_get_the_hub_403_page(
    page: Any, hub: HubProcess, browser: Any
) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("link", name="Token cache")).to_be_visible()
    page.goto(f"{hub.url}/hub/home")  # the link is on every hub page
    expect(page.get_by_role("link", name="Token cache")).to_be_visible()

    browser.clear_cookies()
    log_in(page, hub, "bob")
    expect(page.get_by_role("link", name="Home")).to_be_visible()
    expect(page.get_by_role("link", name="Token cache")).to_have_count(0)
    response = page.goto(f"{hub.url}/hub/token-cache")
    assert response.status == 403
    expect(page.get_by_role("heading", name=re.compile(r"^403 : Forbidden"))).to_be_visible()
    expect(page.get_by_text("Requires admin:users or custom:token-cache:admin")).to_be_visible()
    expect(page.get_by_role("link", name="Home")).to_be_visible()  # the hub's own page
