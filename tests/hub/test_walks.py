"""A reset and the sweep do their database work on a thread of their own (hub/walks.py).

While one of their steps waits for the database — here for the write lock another
connection holds for :data:`HELD` seconds, the way a slow disk's fsync or a busy
PostgreSQL makes a commit wait — JupyterHub's event loop goes on answering requests;
what each step deletes is announced and evicted as it commits, every token ends, and the
hub's own session keeps no object for a row the walk deleted. Run on SQLite and on
PostgreSQL (``hub_db``). Before, the loop waited out every commit of a walk: the hub
stopped answering for as long as the lock was held.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Iterator
from typing import Any

from jupyterhub import orm
from sqlalchemy import func, select, text

from jupyter_token_cache.hub.lineage import LINEAGE, RESETS, REVOKE_BATCH
from jupyter_token_cache.hub.walks import _worker
from jupyter_token_cache.tokens.events import REVOKED

from .. import bulk
from .conftest import Hub

#: Seconds the write lock is held while the walk runs.
HELD = 1.5
#: Users loaded: each with an API token and two minted tokens (several steps of a reset).
USERS = 3 * REVOKE_BATCH


@contextlib.contextmanager
def writes_locked(hub: Hub) -> Iterator[None]:
    """Another connection holds the database's write lock (readers go on)."""
    engine = hub.db.get_bind()
    if engine.dialect.name == "sqlite":
        raw = sqlite3.connect(engine.url.database, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        return
    with engine.connect() as conn:
        conn.exec_driver_sql(f"LOCK TABLE {orm.APIToken.__tablename__} IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


async def longest_wait(hub: Hub, seconds: float) -> float:
    """The longest ``GET /hub/api/`` (no credential, no database) over ``seconds``."""
    longest = 0.0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        start = time.perf_counter()
        r = await hub.http.get("api/")
        assert r.status_code == 200
        longest = max(longest, time.perf_counter() - start)
        await asyncio.sleep(0.01)
    return longest


async def while_locked(hub: Hub, walk: Awaitable[Any]) -> tuple[asyncio.Task[Any], float]:
    """Start ``walk`` with writes locked out; (its task, the loop's longest answer meanwhile)."""
    with writes_locked(hub):
        task: asyncio.Task[Any] = asyncio.ensure_future(walk)
        longest = await longest_wait(hub, HELD)
        assert not task.done(), "the walk did not wait for the lock"
    return task, longest


async def test_a_reset_waiting_for_the_database_leaves_the_loop_free(hub: Hub) -> None:
    extension = hub.app.authenticator
    loaded = bulk.load(hub.db.get_bind(), USERS, every=7)
    held = list(hub.db.query(orm.APIToken))  # the hub's session holds every row's object
    assert await statuses(hub, loaded.sample.values()) == {200}
    admin = hub.token("admin", admin=True)
    # JupyterHub lists a user's tokens from the list its session loaded
    assert len(await listed(hub, admin, loaded.users[0])) == 3
    events = extension.token_events.subscribe(None)
    task, longest = await while_locked(hub, extension.token_service.reset(revoke=True))
    result = await asyncio.wait_for(task, 60)
    print(
        f"\nreset of {2 * USERS} tokens, writes locked {HELD} s: longest answer {longest * 1000:.1f} ms"
    )
    assert longest < HELD / 3  # on the loop, it was the whole HELD
    assert result["revoked"] == 2 * USERS
    assert await statuses(hub, loaded.sample.values()) == {403}
    revoked = revoked_ids(events)
    assert revoked == {f"a{id_}" for id_ in loaded.minted_ids}
    gone = {f"a{id_}" for id_ in loaded.minted_ids}
    assert not [t for t in held if t.api_id in gone and t in hub.db]
    assert await listed(hub, admin, loaded.users[0]) == ["bulk parent"]


async def test_a_sweep_waiting_for_the_database_leaves_the_loop_free(hub: Hub) -> None:
    extension = hub.app.authenticator
    loaded = bulk.load(hub.db.get_bind(), USERS, every=7)
    parents = [orm.APIToken.find(hub.db, token).id for token in loaded.parents.values()]
    for id_ in parents:  # deleted where no flush sees it: their children are orphans
        hub.db.execute(text("DELETE FROM api_tokens WHERE id = :id"), {"id": id_})
    hub.db.commit()
    # the sweep the hub runs as it starts has ended (one sweep runs at a time: another
    # asked meanwhile returns at once)
    for _ in range(1000):
        if extension.token_observer.last_sweep["runs"]:
            break
        await asyncio.sleep(0.01)
    task, longest = await while_locked(hub, extension.token_observer.sweep())
    dealt = await asyncio.wait_for(task, 60)
    print(
        f"\nsweep of {2 * USERS} orphans, writes locked {HELD} s: longest answer {longest * 1000:.1f} ms"
    )
    assert longest < HELD / 3
    assert dealt == 2 * USERS  # every child of the deleted parents revoked
    assert await statuses(hub, loaded.sample.values()) == {403}


async def test_a_walk_cancelled_mid_step_finishes_the_step_and_reports_it(hub: Hub) -> None:
    """A hub that stops cancels its reset while a step waits for the database: the step,
    already begun on the walk's thread, finishes on its session (closed after it, not
    under it), its count in the reset's record is what it deleted, and what it deleted is
    announced. Before, the session was closed at the cancellation, under the running
    step: its delete was rolled back and its count committed (a resumed reset then
    counted the batch twice, tests/e2e/test_reset_restart.py on a loaded machine)."""
    extension = hub.app.authenticator
    loaded = bulk.load(hub.db.get_bind(), USERS, every=7)
    events = extension.token_events.subscribe(None)
    reset = extension.token_resets.start(None, revoke=True)  # recorded; its task not begun
    with writes_locked(hub):
        await asyncio.sleep(0.5)  # its first step waits for the lock
        assert reset.task is not None
        reset.task.cancel()
        await asyncio.sleep(0.1)
    await asyncio.wrap_future(_worker().submit(lambda: None))  # the step has ended
    await asyncio.sleep(0.1)  # its report, handed to the loop
    hub.db.expire_all()
    recorded = hub.db.execute(select(RESETS.c.revoked, RESETS.c.finished)).one()
    left = hub.db.execute(
        select(func.count()).select_from(LINEAGE).where(LINEAGE.c.kind != "server")
    ).scalar()
    assert recorded.finished is None  # cut short: the next hub goes on with it
    assert recorded.revoked == 2 * USERS - left == REVOKE_BATCH
    revoked = revoked_ids(events)
    gone = {f"a{id_}" for id_ in loaded.minted_ids} - {
        f"a{row.token_id}" for row in hub.db.execute(select(LINEAGE.c.token_id))
    }
    assert revoked == gone and len(gone) == REVOKE_BATCH


def revoked_ids(events: Any) -> set[str]:
    """The ids of every token the subscription ``events`` has heard revoked so far."""
    revoked = set()
    while not events.queue.empty():
        event = events.queue.get_nowait()
        if event is not None and event.type == REVOKED:
            revoked.update(event.token_ids)
    return revoked


async def listed(hub: Hub, admin: str, user: str) -> list[str]:
    """The notes of ``user``'s tokens, as JupyterHub's token list shows them."""
    r = await hub.api("GET", f"users/{user}/tokens", admin)
    assert r.status_code == 200, r.text
    return sorted(t["note"] for t in r.json()["api_tokens"])


async def statuses(hub: Hub, tokens: Any) -> set[int]:
    found = set()
    for token in tokens:
        r = await hub.http.get("api/user", headers={"Authorization": f"token {token}"})
        found.add(r.status_code)
    return found
