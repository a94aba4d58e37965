"""A lineage row whose token ended where no flush saw it never breaks a mint or hides a token.

Databases hand a deleted row's id to the next row (SQLite does it by itself; a restore or
a reset sequence does it on PostgreSQL), and JupyterHub deletes expired tokens at start-up,
before the extension watches the database. A mint that gets such an id must replace the
stale lineage row (and announce that the token it named has ended); a mint that fails
half-way must leave no token behind.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from jupyterhub import orm
from jupyterhub.tests.mocking import MockHub
from sqlalchemy import select, text
from traitlets.config import Config

from jupyter_token_cache.hub import minter as minter_module
from jupyter_token_cache.hub.lineage import LINEAGE

from .conftest import Hub, start_hub, stop_hub

PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}


async def status(hub: Hub, token: str) -> int:
    r = await hub.http.get("api/user", headers={"Authorization": f"token {token}"})
    return r.status_code


def next_id_is(hub: Hub, id_: int) -> None:
    """Make the database hand ``id_`` to the next token row, as SQLite does by itself for
    a deleted last row, and a restore or a reset sequence does on PostgreSQL."""
    if hub.db.get_bind().dialect.name == "postgresql":
        hub.db.execute(
            text("SELECT setval(pg_get_serial_sequence('api_tokens', 'id'), :id)"), {"id": id_ - 1}
        )
        hub.db.commit()


def lineage_ids(hub: Hub) -> set[int]:
    hub.db.expire_all()
    return set(hub.db.execute(select(LINEAGE.c.token_id)).scalars())


async def listed(hub: Hub, admin: str, **params: str) -> list[dict[str, Any]]:
    r = await hub.http.get(
        "api/token-cache/tokens", params=params, headers={"Authorization": f"token {admin}"}
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_a_token_deleted_by_raw_sql_whose_id_is_reused(hub: Hub) -> None:
    admin, alice, bob = hub.token("admin", admin=True), hub.token("alice"), hub.token("bob")
    old = (await hub.post("notebook", alice, {})).json()
    old_id = int(old["id"][1:])
    hub.db.execute(text("DELETE FROM api_tokens WHERE id = :id"), {"id": old_id})
    hub.db.commit()  # no flush saw it: its lineage row stays behind
    next_id_is(hub, old_id)
    broker = hub.app.authenticator.token_events
    before = broker.last_id

    r = await hub.post("notebook", bob, {})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["id"] == old["id"]  # the database handed the id on
    assert await status(hub, new["token"]) == 200
    assert [t["user"] for t in await listed(hub, admin)] == ["bob"]
    events = [e for e in broker._history if e.id > before]
    assert [(e.type, e.user, e.token_ids) for e in events] == [
        ("token-revoked", "alice", (old["id"],)),  # the stale row's token, announced first
        ("token-minted", "bob", (new["id"],)),
    ]
    assert events[0].reason == "deleted"
    again = await hub.post("notebook", alice, {})  # alice's cached token is gone: a new one
    assert again.status_code == 200 and again.json()["cached"] is False


def down(app: Any) -> None:
    """Take a hub down as a crash would, leaving the loop (and this test) running.

    ``app.stop()`` would cancel every task on the loop, this test's included.
    """
    app.http_server.stop()
    for callback in app._periodic_callbacks.values():
        callback.stop()
    app.authenticator.token_events.close()
    app.db.close()
    app.db.get_bind().dispose()
    MockHub.clear_instance()


@pytest.fixture
def db_file(hub_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The hub database as a URL that outlives one hub (MockHub's own SQLite file does not)."""
    if hub_db == "sqlite":
        monkeypatch.setenv("JUPYTERHUB_TEST_DB_URL", f"sqlite:///{tmp_path}/jupyterhub.sqlite")
    return hub_db


async def test_a_hub_restarted_after_its_minted_tokens_expired(
    hub_config: Config, db_file: str
) -> None:
    hub = Hub(await start_hub(hub_config))
    try:
        alice = hub.token("alice")
        minted = [
            (await hub.post("notebook", alice, {})).json(),
            (await hub.post("internal", alice, {"service": "dask"})).json(),
        ]
        # the hub stays down longer than their lifetime
        hub.db.execute(
            text("UPDATE api_tokens SET expires_at = :past WHERE note LIKE 'jupyter-token-cache%'"),
            {"past": orm.APIToken.now().replace(year=2000)},
        )
        hub.db.commit()
        hub.secrets.update(t["token"] for t in minted)
    finally:
        await hub.http.aclose()
        down(hub.app)

    # JupyterHub purges the expired rows as it starts, before the extension watches;
    # SQLite hands their ids to the next tokens
    hub = Hub(await start_hub(hub_config))
    try:
        admin, bob = hub.token("admin", admin=True), hub.token("bob")
        fresh = [
            await hub.post("notebook", bob, {}),
            await hub.post("internal", bob, {"service": "dask"}),
        ]
        assert [r.status_code for r in fresh] == [200, 200], [r.text for r in fresh]
        for r in fresh:
            assert await status(hub, r.json()["token"]) == 200
        expired = {int(t["id"][1:]) for t in minted} - {int(r.json()["id"][1:]) for r in fresh}
        deadline = time.monotonic() + 10
        while lineage_ids(hub) & expired and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the sweep that follows the start-up
        assert not lineage_ids(hub) & expired
        assert {t["id"] for t in await listed(hub, admin)} == {r.json()["id"] for r in fresh}
        ended = {
            e.token_ids[0]
            for e in hub.app.authenticator.token_events._history
            if e.type == "token-revoked"
        }
        assert ended >= {t["id"] for t in minted}
    finally:
        await hub.http.aclose()
        await stop_hub(hub.app)


async def test_a_mint_that_fails_after_the_token_row_was_written_leaves_no_token(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = hub.token("alice")
    rows = len(hub.token_rows("alice"))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the lineage row could not be written")

    monkeypatch.setattr(minter_module, "to_row", broken)
    async with httpx.AsyncClient(base_url=hub.url) as plain:  # a 500 is in no API document
        r = await plain.post(
            "api/token-cache/notebook", headers={"Authorization": f"token {alice}"}
        )
    assert r.status_code == 500
    assert len(hub.token_rows("alice")) == rows  # the token row went with the failure
    assert hub.minted_rows("alice") == []
    monkeypatch.undo()
    r = await hub.post("notebook", alice, {})
    assert r.status_code == 200, r.text
    assert await status(hub, r.json()["token"]) == 200
    assert len(hub.minted_rows("alice")) == 1
