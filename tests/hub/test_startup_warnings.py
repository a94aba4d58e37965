"""As the hub starts: it logs the settings that do not fit together (TokenCache.problems),
and moves its objects out of the garbage collector's way (TokenCache.freeze_gc)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

from .conftest import Hub


@pytest.mark.hub_config(
    TokenCache__notebook_lifetime=120, TokenCache__notebook_scopes=["read:nonsense"]
)
async def test_problems_are_warnings_at_start(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    started = caplog.get_records("setup")  # the hub fixture starts the hub
    warned = [r.getMessage() for r in started if r.levelno == logging.WARNING]
    assert any(m.startswith("TokenCache.notebook_lifetime: tokens live 120 s") for m in warned)
    assert any(m.startswith("TokenCache.notebook_scopes:") and "read:nonsense" in m for m in warned)


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # this process runs every test's hub: let them go


@pytest.mark.hub_config(TokenCache__freeze_gc=True)
async def test_the_hub_freezes_what_it_holds_once_started(unfrozen: None, hub: Hub) -> None:
    assert gc.get_freeze_count() > 10_000  # the hub's modules, classes, settings and state
