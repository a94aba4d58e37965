"""The hub logs the settings that do not fit together (TokenCache.problems) when it starts."""

from __future__ import annotations

import logging

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


@pytest.mark.hub_config(TokenCache__notebook_scopes=["read:users:name!user=", "read:users!user"])
async def test_an_empty_filter_is_a_warning_at_start(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    warned = [r.getMessage() for r in caplog.get_records("setup") if r.levelno == logging.WARNING]
    assert any(m.startswith("TokenCache.notebook_scopes:") and "!user=" in m for m in warned)
