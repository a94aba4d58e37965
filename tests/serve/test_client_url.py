"""Notebooks use the same client in both modes: it finds the API from its environment."""

from __future__ import annotations

import pytest

from jupyter_token_cache.client import API_URL_ENV, TokenCacheClient


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t" * 32)
    monkeypatch.delenv(API_URL_ENV, raising=False)


def test_in_hub_mode_the_client_asks_the_hub() -> None:
    with TokenCacheClient() as client:
        assert str(client._http.base_url) == "http://127.0.0.1:8081/hub/api/token-cache/"


def test_in_replicated_mode_the_client_asks_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_URL_ENV, "http://proxy-public/services/token-cache/")
    with TokenCacheClient() as client:
        assert str(client._http.base_url) == "http://proxy-public/services/token-cache/"
    # an explicit api_url still means that hub
    with TokenCacheClient("http://hub:8081/hub/api") as client:
        assert str(client._http.base_url) == "http://hub:8081/hub/api/token-cache/"
