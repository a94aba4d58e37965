"""The admin page shows a backend that went away: unavailable, since when, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..e2e.services import api_token
from ..servers import RedisServer
from .admin import SHOWN_WITHIN, admin_hub, admin_page, ask, counter

pytestmark = pytest.mark.e2e


def test_a_backend_that_went_away_shows_as_unavailable(
    tmp_path: Path, own_redis: RedisServer, crypt_key: str, browser: Any
) -> None:
    from playwright.sync_api import expect

    redis = f'c.TokenCache.backend = "redis"\nc.TokenCache.url = "{own_redis.url}"\n'
    key = f'c.TokenCache.encryption_key = "{crypt_key}"\n'
    with admin_hub(tmp_path, redis + key) as hub:
        page = admin_page(browser, hub)
        expect(page.locator("#tc-backend")).to_have_text("redis")
        expect(page.locator("#tc-health")).to_have_text("available")
        expect(page.locator("#tc-last-error")).to_have_text("none")
        errors = counter(page, "errors")
        # a shared store keeps no count of its entries (the stats say null): a dash, not "null"
        expect(page.locator("#tc-entries")).to_have_text("–")

        own_redis.kill()
        token = api_token(hub, "alice")["token"]
        ask(hub, token)  # the cache fails open: a miss, and a mint
        expect(page.locator("#tc-health")).to_have_text("unavailable", timeout=SHOWN_WITHIN)
        expect(page.locator("#tc-health-since")).to_contain_text("since ")
        expect(page.locator("#tc-last-error")).not_to_have_text("none")
        assert counter(page, "errors") > errors
