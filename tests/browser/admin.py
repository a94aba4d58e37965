"""Helpers of the browser tests: a hub with an admin who logs in by password, and the
admin page's parts as a person finds them (by role and label)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ..hubprocess import HubProcess, running_hub

#: Debian's chromium (``apt-get install chromium``), or another Chromium or Chrome.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser-test-password"
CONFIG = f"""
from jupyter_token_cache import with_token_cache

c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.DummyAuthenticator.password = {PASSWORD!r}
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {{"admin"}}
"""
#: How long the page may take to show a change (it refreshes every 3 s).
SHOWN_WITHIN = 15_000

#: Every token the tests were handed: none may appear in a hub's log.
_tokens_seen: list[str] = []


@contextlib.contextmanager
def admin_hub(workdir: Path, extra: str = "") -> Iterator[HubProcess]:
    """A started hub with an ``admin`` user; afterwards, no token in its log."""
    with running_hub(workdir, CONFIG + extra) as hub:
        yield hub
    log = hub.log()
    assert not [token for token in _tokens_seen if token in log], "a token in the hub's log"


def log_in(page: Any, hub: HubProcess, user: str, next_url: str = "/hub/home") -> None:
    """Log ``user`` in through the hub's login form, landing on ``next_url``."""
    page.goto(f"{hub.url}/hub/login?next={next_url}")
    page.get_by_label("Username:", exact=True).fill(user)
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{hub.url}{next_url}")


def admin_page(browser: Any, hub: HubProcess) -> Any:
    """The admin, logged in, on the admin page."""
    page = browser.pages[0] if browser.pages else browser.new_page()
    log_in(page, hub, "admin", next_url="/hub/token-cache")
    assert page.url == f"{hub.url}/hub/token-cache"
    return page


def ask(hub: HubProcess, token: str, route: str = "notebook", **body: Any) -> dict[str, Any]:
    """A token from the cache's REST API (``route`` "notebook" or "internal")."""
    r = httpx.post(f"{hub.url}/hub/api/token-cache/{route}", json=body,
                   headers={"Authorization": f"token {token}"}, timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    _tokens_seen.append(r.json()["token"])
    return r.json()  # type: ignore[no-any-return]


def counter(page: Any, name: str) -> int:
    """A counter's value on the page, once the page has shown one."""
    from playwright.sync_api import expect

    cell = page.locator(f"#tc-{name}")
    expect(cell).to_have_text(re.compile(r"^\d+$"), timeout=SHOWN_WITHIN)
    return int(cell.inner_text())
