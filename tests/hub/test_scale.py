"""A hub of 30,000 minted tokens: every operation bounded, complete, and yielding as it goes.

The hub database is bulk-loaded (tests/bulk.py, checked against a token minted through the
API), then each operation that may touch many rows runs with every SQL statement watched:
none may bind more than :data:`BOUND` parameters, whatever the table's size (an ``IN`` list
of every id would bind thousands), and each step of a walk commits and lets the event loop
run before the next. SQLite runs with its parameter limit at 999 (before 3.32) and at
32,766 (since): the sweep used to fail from about 22,000 minted tokens at the default, and
at any size worth the name at 999. PostgreSQL runs through psycopg 2 and psycopg 3 (limit
65,535). How long the operations take, and how long they hold the event loop, is the scale
benchmark's (``./run bench --only scale``); this asserts structure only.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from jupyterhub import orm
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from jupyter_token_cache.hub.lineage import BATCH, LINEAGE
from jupyter_token_cache.hub.minter import COUNT_STEP

from .. import bulk
from .conftest import Hub

#: Users loaded, by database: each with an API token and two tokens minted from it. SQLite
#: at 30,000 minted tokens (its default limit failed the sweep from about 22,000);
#: PostgreSQL, slower to load, at 10,000: the statements watched prove the bound at any
#: size above it, and the scale benchmark runs both drivers at 100,000.
USERS = {
    "sqlite-999": 15_000,
    "sqlite-32766": 15_000,
    "postgresql-psycopg2": 5_000,
    "postgresql-psycopg": 5_000,
}
#: Most parameters any statement may bind: two ``IN`` lists of a batch, and a few more.
BOUND = 2 * BATCH + 20
PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}


@pytest.fixture(params=list(USERS))
def hub_db(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """SQLite with its parameter limit at 999 and at 32,766; PostgreSQL through each driver."""
    if request.param.startswith("sqlite"):
        limit = int(request.param.split("-")[1])

        def limited(dbapi: Any, record: Any) -> None:
            if isinstance(dbapi, sqlite3.Connection):
                dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)

        monkeypatch.delenv("JUPYTERHUB_TEST_DB_URL", raising=False)
        event.listen(Engine, "connect", limited)
        yield request.param
        event.remove(Engine, "connect", limited)
        return
    server = request.getfixturevalue("postgres_server")
    driver = request.param.split("-")[1]
    url = server.create_database().replace("+psycopg2:", f"+{driver}:")
    monkeypatch.setenv("JUPYTERHUB_TEST_DB_URL", url)
    yield request.param
    server.drop_database(url)


class Watch:
    """Every statement sent to the hub database: the most parameters one bound; and, for
    each commit of the extension's background work (a reset, a sweep), which walk made it
    and how many turns the event loop had taken.

    Commits are told apart by walk (the walk's own session, or the task on the loop):
    two walks at once (a periodic sweep during a reset) share the walk thread, and a step
    of one may follow a step of the other before the loop turns; what each walk promises
    is a turn of the loop between two of its own steps."""

    #: Tasks whose commits count: resets, sweeps, and what :meth:`run` runs.
    TASKS = ("token-cache-reset", "token-cache-sweep", "watched")
    #: The thread the steps of resets and sweeps run on (hub/walks.py), on their own session.
    WALKS = "token-cache-walk"

    def __init__(self, hub: Hub) -> None:
        self.engine: Engine = hub.db.get_bind()
        self.db = hub.db
        self.most, self.widest = 0, ""
        self.turns = 0
        #: The loop's turns at each commit of background work, by walk.
        self.commits: dict[object, list[int]] = {}
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(Session, "after_commit", self._commit)
        self._ticker = asyncio.ensure_future(self._tick())

    def close(self) -> None:
        self._ticker.cancel()
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(Session, "after_commit", self._commit)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.turns += 1

    def _statement(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        one = parameters[0] if executemany and parameters else parameters
        count = len(one or ())
        if count > self.most:
            self.most, self.widest = count, statement[:300]

    def _commit(self, session: Any) -> None:
        if threading.current_thread().name.startswith(self.WALKS):
            self.commits.setdefault(id(session), []).append(self.turns)
            return
        task = asyncio.current_task()
        if task is not None and task.get_name().startswith(self.TASKS):
            self.commits.setdefault(task.get_name(), []).append(self.turns)

    async def run(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run ``work`` as a watched task."""
        self.commits = {}
        return await asyncio.create_task(work(), name="watched")

    def steps(self) -> int:
        """Commits of the walk that made the most."""
        return max(map(len, self.commits.values()), default=0)

    def yielded_between_commits(self) -> bool:
        """Whether the loop turned between any two commits of one walk."""
        return all(
            later > earlier
            for turns in self.commits.values()
            for earlier, later in itertools.pairwise(turns)
        )


async def statuses(hub: Hub, tokens: list[str]) -> set[int]:
    async def one(token: str) -> int:
        r = await hub.http.get("api/user", headers={"Authorization": f"token {token}"})
        return r.status_code

    found = set()
    for start in range(0, len(tokens), 20):
        found |= set(await asyncio.gather(*map(one, tokens[start : start + 20])))
    return found


def minted_left(hub: Hub) -> int:
    hub.db.expire_all()
    query = select(func.count()).select_from(LINEAGE).where(LINEAGE.c.kind != "server")
    return int(hub.db.execute(query).scalar())


async def test_every_operation_is_bounded_at_scale(hub: Hub, hub_db: str) -> None:
    users = USERS[hub_db]
    engine = hub.db.get_bind()
    loaded = bulk.load(engine, users, every=500)
    # a parent with many children; a user with many tokens
    wide = bulk.load(engine, 1, prefix="wide", minted=3 * BATCH, every=50)
    heavy = bulk.load(engine, 1, prefix="heavy", minted=3 * BATCH, every=50)
    admin = {"Authorization": f"token {hub.token('admin', admin=True)}"}
    alice = hub.token("alice")
    minted = (await hub.post("notebook", alice, {})).json()
    hub.secrets.add(minted["token"])
    bulk.same_shape(engine, loaded.minted_ids[0], int(minted["id"][1:]), ("bulk0", "alice"))
    assert await statuses(hub, list(loaded.sample.values())[:20]) == {200}
    extension = hub.app.authenticator
    watch = Watch(hub)
    try:
        # the sweep: everything, in batches, each committed before the loop turns; it finds
        # a parent deleted by raw SQL (its two children are orphans) and a minted token
        # deleted by raw SQL (its lineage row is left behind)
        first, second = loaded.minted_ids[0], loaded.minted_ids[2]
        for id_ in (first - 1, second):
            hub.db.execute(text("DELETE FROM api_tokens WHERE id = :id"), {"id": id_})
        hub.db.commit()
        assert await watch.run(extension.token_observer.sweep) == 3
        assert watch.steps() >= (2 * users) // BATCH and watch.yielded_between_commits()
        total = 2 * users + 6 * BATCH - 3 + 1  # bulk, wide, heavy, what the sweep ended, alice's

        # the listing: first page, deep page, filters; counted in steps of the walk
        async def page(**params: Any) -> dict[str, Any]:
            r = await hub.http.get(
                "api/token-cache/tokens", params=params, headers={**admin, **PAGINATED}
            )
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

        top = await page(limit=50)
        assert top["_pagination"]["total"] == total > COUNT_STEP
        assert [t["id"] for t in top["items"]] == [f"a{i}" for i in loaded.minted_ids[3:53]]
        deep = await page(offset=total - 10, limit=50)
        assert len(deep["items"]) == 10 and deep["items"][-1]["id"] == minted["id"]
        assert deep["_pagination"]["next"] is None
        assert (await page(user="bulk7"))["_pagination"]["total"] == 2
        assert (await page(kind="internal", limit=1))["_pagination"][
            "total"
        ] == users - 1 + 3 * BATCH
        assert (await page(service="nothing"))["items"] == []

        # a cascade: a parent with 3 x BATCH children deleted through the hub's API
        parent_id = orm.APIToken.find(hub.db, wide.parents["wide0"]).api_id
        hub_admin = hub.token("admin", admin=True)
        r = await hub.api("DELETE", f"users/wide0/tokens/{parent_id}", hub_admin)
        assert r.status_code == 204
        assert await statuses(hub, list(wide.sample.values())) == {403}
        assert minted_left(hub) == total - 3 * BATCH
        # JupyterHub's own flush of many rows: a user with 3 x BATCH tokens deleted
        assert (await hub.api("DELETE", "users/heavy0", hub_admin)).status_code == 204
        assert await statuses(hub, list(heavy.sample.values())) == {403}
        assert minted_left(hub) == total - 6 * BATCH

        # one user's reset with revoke: small, answered at once
        r = await hub.http.delete("api/token-cache/users/bulk9?revoke=true", headers=admin)
        assert r.status_code == 200 and r.json() == {"cleared": True, "revoked": 2}

        # a reset with revoke of everything: a handle at once, followed to the end
        watch.commits = {}
        r = await hub.http.delete(
            "api/token-cache?revoke=true", headers={**admin, "Prefer": "respond-async"}
        )
        assert r.status_code == 202, r.text
        handle = r.headers["Location"]
        assert handle.endswith(f"/api/token-cache/resets/{r.json()['id']}")
        while (state := (await hub.http.get(handle.split("/hub/", 1)[1], headers=admin)).json())[
            "state"
        ] == "running":
            assert state["revoked"] <= total
            await asyncio.sleep(0.2)
        assert state["state"] == "done" and state["revoked"] == total - 6 * BATCH - 2
        assert state["cleared"] is True and state["finished"]
        assert watch.steps() >= state["revoked"] // BATCH and watch.yielded_between_commits()
    finally:
        watch.close()
    assert watch.most <= BOUND, (watch.most, watch.widest)
    assert minted_left(hub) == 0
    assert await statuses(hub, [*loaded.sample.values(), minted["token"]]) == {403}
    assert await statuses(hub, [alice]) == {200}  # what the cache did not mint stays
