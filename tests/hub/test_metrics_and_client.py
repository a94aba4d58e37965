"""Metrics on the hub's /hub/metrics, and the client a notebook uses (async, in-process)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from jupyterhub.utils import isoformat

from jupyter_token_cache.client import AsyncTokenCacheClient, TokenCacheError
from jupyter_token_cache.times import iso8601

from .conftest import Hub


async def test_hits_misses_mints_per_kind_on_hub_metrics(hub: Hub) -> None:
    parent = hub.token("alice")
    await hub.post("notebook", parent, {})
    await hub.post("notebook", parent, {})
    await hub.post("internal", parent, {"service": "dask"})
    admin = hub.token("admin", admin=True)
    text = (await hub.http.get("metrics", headers={"Authorization": f"token {admin}"})).text
    for line in (
        'jupyterhub_token_cache_mints_total{backend="memory",kind="notebook"}',
        'jupyterhub_token_cache_hits_total{backend="memory",kind="notebook"}',
        'jupyterhub_token_cache_misses_total{backend="memory",kind="internal"}',
        'jupyterhub_token_cache_mints_total{backend="memory",kind="internal"}',
    ):
        assert line in text


async def test_async_client(hub: Hub) -> None:
    parent = hub.token("alice")
    api_url = hub.url.rstrip("/") + "/api"
    async with AsyncTokenCacheClient(api_url, parent) as client:
        notebook = await client.get_notebook_token()
        assert notebook.cached is False and notebook.token not in repr(notebook)
        assert notebook.expires_at.tzinfo is not None
        left = notebook.expires_at.timestamp() - time.time()
        assert abs(notebook.expires_in - left) <= 2
        assert (await client.get_notebook_token(minimum_lifetime=60)).token == notebook.token
        internal = await client.get_internal_token("dask", ["read:users!user"])
        assert internal.service == "dask" and internal.scopes
        with pytest.raises(TokenCacheError) as refused:
            await client.get_internal_token("nope")
        assert refused.value.status == 404 and "nope" in refused.value.message


def test_client_needs_a_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    with pytest.raises(TokenCacheError, match="JUPYTERHUB_API_URL"):
        AsyncTokenCacheClient()


@pytest.mark.parametrize("epoch", [0.0, 1764064200.0, 1764064200.123456, 4102444800.5])
def test_times_are_written_as_jupyterhub_writes_them(epoch: float) -> None:
    assert iso8601(epoch) == isoformat(datetime.fromtimestamp(epoch, timezone.utc))
    assert iso8601(None) is None
