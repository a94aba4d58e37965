"""A reset with revoke that its hub did not finish is finished by the hub that starts next.

On a real ``jupyterhub`` (SQLite), a reset of everyone's tokens is asked for (by the
command line, which follows its handle); once some
batches have committed, the hub is stopped (SIGTERM), killed (SIGKILL) or frozen
(SIGSTOP, then SIGCONT). A fresh hub on the same database goes on with the reset under
the same handle, from where the committed batches left it (hub/resets.py): every token
minted before the reset was asked for answers 403 afterwards, the count covers both
hubs, and a token minted after the reset was asked for is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from jupyter_token_cache.hub.lineage import LINEAGE, RESETS

from .. import bulk
from ..cli.cli import SCRIPT
from ..hubprocess import HubProcess
from ..servers import MissingBinary, unavailable
from ..times import until

CONFIG = """
from jupyter_token_cache import with_token_cache
c.JupyterHub.authenticator_class = with_token_cache("dummy")
c.Authenticator.allow_all = True
c.TokenCache.services = {"dask": {"scopes": ["read:users!user"], "lifetime": 3600}}
"""
#: Users bulk-loaded, two minted tokens each: a reset of them takes a few seconds.
USERS = 3_000


def status(hub: HubProcess, token: str) -> int:
    r = httpx.get(f"{hub.hub_url}/hub/api/user", headers={"Authorization": f"token {token}"})
    return r.status_code


@pytest.mark.e2e
@pytest.mark.parametrize("cut", ["stop", "kill", "freeze"])
def test_a_reset_cut_short_is_finished_by_the_next_hub(tmp_path: Path, cut: str) -> None:
    """Asked by ``jupyter-token-cache reset --revoke`` through the proxy, which follows
    the handle across the outage (the proxy answering 503, then not at all)."""
    try:
        hub = HubProcess(tmp_path, CONFIG)
    except MissingBinary as e:
        unavailable(e)
    hub.start()
    engine = create_engine(f"sqlite:///{tmp_path}/jupyterhub.sqlite")
    command: subprocess.Popen[str] | None = None
    try:
        loaded = bulk.load(engine, USERS, every=100)

        def one(query: Any) -> Any:
            with engine.connect() as conn:
                return conn.execute(query).scalar()

        minted = select(func.count()).select_from(LINEAGE).where(LINEAGE.c.kind != "server")
        assert one(minted) == 2 * USERS
        with hub.admin(direct=True) as admin:
            admin.post("users/alice")
            parent = admin.post("users/alice/tokens", json={}).json()["token"]
        env = {
            "JUPYTERHUB_API_URL": f"{hub.url}/hub/api",
            "JUPYTERHUB_API_TOKEN": hub.service_token,
        }
        command = subprocess.Popen(  # noqa: S603 - our own console script
            [str(SCRIPT), "reset", "--revoke", "-y", "--json"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        until(lambda: one(select(func.count()).select_from(RESETS)), 120, "the reset's record")
        # minted after the reset was asked for: not the reset's to revoke
        later = httpx.post(
            f"{hub.hub_url}/hub/api/token-cache/notebook",
            headers={"Authorization": f"token {parent}"},
            json={},
        ).json()["token"]
        until(lambda: one(minted) < 2 * USERS - 200, 120, "a few batches")
        assert hub.process is not None
        if cut == "freeze":
            hub.process.send_signal(signal.SIGSTOP)
            time.sleep(2)
            hub.process.send_signal(signal.SIGCONT)
        else:
            if cut == "stop":
                hub.stop()
            else:
                hub.kill()  # the proxy answers 503 for a while
                time.sleep(2)
            assert 1 < one(minted) < 2 * USERS  # cut in the middle
            hub.stop()  # what a killed hub left behind (its proxy): nothing answers
            time.sleep(1)
            hub.start()
        out, err = command.communicate(timeout=180)
        assert command.returncode == 0, err
        state = json.loads(out)
        assert state["state"] == "done", state
        assert state["revoked"] == 2 * USERS and state["cleared"] is True
        if cut != "freeze":
            assert "the reset goes on when the hub starts again" in err
        assert one(minted) == 1  # the notebook token minted after the reset was asked for
        assert {status(hub, t) for t in loaded.sample.values()} == {403}
        assert status(hub, later) == 200
        assert not any(t in out + err for t in (parent, later, hub.service_token))
    finally:
        if command is not None and command.poll() is None:
            command.kill()
        engine.dispose()
        hub.stop()
