"""Races: revocation while requests are in flight, and a reset in the middle of a stampede."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .conftest import Hub
from .conftest import any_backend_config as hub_config  # noqa: F401 - every test on every backend


async def test_revoked_while_in_flight_is_never_served_after_the_delete(hub: Hub) -> None:
    parent = hub.token("alice")
    first = (await hub.post("notebook", parent, {})).json()
    answers: list[tuple[float, dict[str, Any]]] = []
    deleted_at: list[float] = []

    async def ask() -> None:
        started = time.monotonic()
        answers.append((started, (await hub.post("notebook", parent, {})).json()))

    async def revoke() -> None:
        await asyncio.sleep(0.01)
        r = await hub.api("DELETE", f"users/alice/tokens/{first['id']}", parent)
        assert r.status_code == 204
        deleted_at.append(time.monotonic())

    await asyncio.gather(*(ask() for _ in range(50)), revoke())
    await asyncio.gather(*(ask() for _ in range(20)))
    later = [body for started, body in answers if started > deleted_at[0]]
    assert len(later) >= 20
    assert all(body["token"] != first["token"] for body in later)
    assert len({body["token"] for body in later}) == 1  # and the replacement was minted once


async def test_reset_during_a_stampede(hub: Hub) -> None:
    parent = hub.token("alice")
    admin = hub.token("admin", admin=True)
    stats = hub.app.authenticator.token_service.stats

    async def reset() -> None:
        await asyncio.sleep(0.005)
        r = await hub.http.delete("api/token-cache", headers={"Authorization": f"token {admin}"})
        assert r.status_code == 200

    answers, _ = await asyncio.gather(
        asyncio.gather(*(hub.post("notebook", parent, {}) for _ in range(200))), reset()
    )
    assert {r.status_code for r in answers} == {200}
    before = stats()["mints"]
    settled = await asyncio.gather(*(hub.post("notebook", parent, {}) for _ in range(100)))
    assert len({r.json()["token"] for r in settled}) == 1
    assert stats()["mints"] - before <= 1  # one mint per key afterwards, if any
