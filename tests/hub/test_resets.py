"""A reset with revoke ends upstream sessions too (the user's, or everyone's), in the
reset's job (hub/resets.py): first, so that a reset answered 200 has ended them; a
failure to end one fails the reset without keeping its tokens alive. tests/e2e/test_upstream_tokens.py
checks the whole of it on a real hub and provider."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from jupyter_token_cache.hub.authenticator import users_with_auth_state
from jupyter_token_cache.hub.lineage import BATCH, create_tables
from jupyter_token_cache.hub.resets import Resets
from jupyter_token_cache.tokens.service import TokenService

from .conftest import Hub

LOG = logging.getLogger(__name__)


class Service:
    """The token service's reset, recording what happened when."""

    def __init__(self, done: list[str]) -> None:
        self.done = done

    async def reset(
        self, user: str | None, *, revoke: bool, progress: Callable[[int], None], job: str
    ) -> dict[str, Any]:
        self.done.append(f"tokens of {user}")
        progress(2)
        return {"cleared": True, "revoked": 2 if revoke else 0}


def resets(done: list[str], *, fails: bool = False) -> Resets:
    async def ending(name: str) -> None:
        done.append(f"upstream session of {name}")
        if fails:
            raise RuntimeError("the auth state could not be saved")

    engine = create_engine("sqlite://")  # where resets are recorded
    create_tables(engine)
    return Resets(cast(TokenService, Service(done)), Session(engine), log=LOG, ending=ending)


async def test_a_users_reset_with_revoke_ends_the_upstream_session_first() -> None:
    done: list[str] = []
    reset = resets(done).start("alice", revoke=True)
    assert await reset.wait(5)
    assert done == ["upstream session of alice", "tokens of alice"]
    assert reset.state == "done" and reset.result() == {"cleared": True, "revoked": 2}


async def test_a_reset_without_revoke_leaves_upstream_sessions() -> None:
    done: list[str] = []
    keeper = resets(done)
    for user in ("alice", None):
        assert await keeper.start(user, revoke=False).wait(5)
    assert done == ["tokens of alice", "tokens of None"]


async def test_a_reset_of_everyone_with_revoke_ends_every_upstream_session_first() -> None:
    done: list[str] = []
    reset = resets(done).start(None, revoke=True)
    assert await reset.wait(5)
    assert done == ["upstream session of None", "tokens of None"]  # None: everyone's
    assert reset.state == "done"


async def test_the_users_a_reset_of_everyone_visits_are_those_with_an_auth_state(
    hub: Hub,
) -> None:
    """Read in key order, a batch at a time (more users than one batch holds)."""
    stated = set()
    for i in range(2 * BATCH + 7):
        user = hub.add_user(f"user{i:03}")
        if i % 3 == 0:
            user.encrypted_auth_state = b"sealed"  # what JupyterHub stores, encrypted
            stated.add(user.name)
    hub.db.commit()
    visited = [u.name async for u in users_with_auth_state(hub.db)]
    assert visited == sorted(stated)  # each once, in key order


async def test_a_failure_to_end_the_upstream_session_fails_the_reset_after_revoking(
    caplog: Any,
) -> None:
    done: list[str] = []
    reset = resets(done, fails=True).start("alice", revoke=True)
    assert await reset.wait(5)
    assert done == ["upstream session of alice", "tokens of alice"]  # revoked all the same
    assert reset.state == "failed" and reset.revoked == 2
    assert reset.error and "upstream session" in reset.error
    assert "ending upstream sessions failed" in caplog.text
