"""The browser: Debian's chromium driven by Playwright, one per test module.

Never ``playwright install`` (it downloads a browser, which cannot work here and is not
the browser operators use); a missing chromium fails under CI=true and skips elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from ..servers import MissingBinary, unavailable
from .admin import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A browser context on a fresh profile; every URL it asks for is in ``.requested``."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        unavailable(MissingBinary(f"{CHROMIUM} not found (apt-get install chromium)"))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        context.requested = []
        context.on("request", lambda request: context.requested.append(request.url))
        try:
            yield context
        finally:
            context.close()
