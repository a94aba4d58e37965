"""The restart matrix: every way a token ends × every way a process goes away and comes back.

For each process the promise depends on — a CachedHubAuth service, a replica of
``serve``, the hub — and each way it goes away — stopped and started, killed (SIGKILL)
and started, frozen (SIGSTOP) and thawed — seven tokens end while it is away (or just
before, for the hub): a token deleted, a parent whose child is checked, a user deleted,
a server stopped, a logout, an admin reset with revoke, and a row deleted by raw SQL.
Every process refuses each of them at its first request once it is back; so do a new
replica and a new service started afterwards; introspection at the replicas says
inactive; a replica never hands out a revoked child again.

"Back" is when the process answers again and, for the hub, when the followers' streams
are live again (during a cut, ``on_disconnect = "keep"`` serves cached answers for
``disconnected_ttl`` by design). A row deleted by raw SQL while the hub runs is found by
the hub's next sweep of the tokens it described (``sweep_interval``, 1 s here): the test
waits for that sweep, as an operator's cache would.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from ..e2e.spawning import spawn_and_probe
from .site import (
    REPLICAS,
    SERVICES,
    Site,
    accepted_by_service,
    active_at_replica,
    notebook_at_replica,
)

pytestmark = pytest.mark.e2e

PROCESSES = ["whoami", "token-cache", "hub"]
MODES = ["stop", "kill", "freeze"]


@dataclass
class Victim:
    """A token that is about to end, how it ends, and the credential that asked for it."""

    path: str
    token: str
    revoke: Callable[[], None]
    #: A credential that lives on and got ``token`` from a replica: it must get another.
    parent: str | None = None


def api_token(site: Site, user: str) -> dict[str, str]:
    with site.admin() as admin:
        admin.post(f"users/{user}")
        r = admin.post(f"users/{user}/tokens", json={})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def login(site: Site, user: str) -> httpx.Client:
    """A browser-like client logged in as ``user`` at the hub (the dummy authenticator)."""
    client = httpx.Client(base_url=f"{site.hub.hub_url}/hub/", timeout=30)
    page = client.get("login")
    xsrf = client.cookies.get("_xsrf") or re.search(
        r'name="_xsrf" value="([^"]+)"', page.text
    ).group(1)  # type: ignore[union-attr]
    r = client.post("login", data={"username": user, "password": user, "_xsrf": xsrf})
    assert r.status_code == 302, r.text
    client.headers["X-XSRFToken"] = client.cookies.get("_xsrf") or xsrf
    client.headers["Sec-Fetch-Mode"] = "cors"
    return client


def victims(site: Site, case: str) -> list[Victim]:
    """Seven tokens of users of their own, each with how it will end."""
    made = []
    admin = site.admin()
    replica = REPLICAS[0]
    with httpx.Client(timeout=30) as client:
        token = api_token(site, f"{case}-del")
        made.append(Victim("token delete", token["token"],
                           lambda t=token: admin.delete(f"users/{case}-del/tokens/{t['id']}")))  # fmt: skip
        parent = api_token(site, f"{case}-casc")
        child = notebook_at_replica(site, replica, parent["token"], client)
        assert child is not None
        made.append(Victim("parent cascade", child["token"],
                           lambda p=parent: admin.delete(f"users/{case}-casc/tokens/{p['id']}")))  # fmt: skip
        gone = api_token(site, f"{case}-gone")
        made.append(
            Victim("user deletion", gone["token"], lambda: admin.delete(f"users/{case}-gone"))
        )
        probe = spawn_and_probe(admin, f"{case}-srv", site.hub.workdir)

        def stop_server() -> None:
            admin.delete(f"users/{case}-srv/server")
            deadline = time.monotonic() + 30
            while admin.get(f"users/{case}-srv").json()["servers"]:
                assert time.monotonic() < deadline, "the server did not stop"
                time.sleep(0.1)

        made.append(Victim("server stop", probe["notebook_token"], stop_server))
        browser = login(site, f"{case}-out")
        r = browser.post("api/token-cache/notebook", json={})
        assert r.status_code == 200, r.text
        made.append(Victim("logout", r.json()["token"], lambda: browser.get("logout")))
        owner = api_token(site, f"{case}-reset")
        reset_child = notebook_at_replica(site, replica, owner["token"], client)
        assert reset_child is not None
        made.append(Victim("admin reset with revoke", reset_child["token"],
                           lambda: admin.delete(f"token-cache/users/{case}-reset",
                                                params={"revoke": "true"}),
                           parent=owner["token"]))  # fmt: skip
        raw = api_token(site, f"{case}-sql")

        def raw_delete(row: str = raw["id"]) -> None:
            with site.db() as db:
                db.execute("DELETE FROM api_tokens WHERE id = ?", (int(row[1:]),))

        made.append(Victim("raw SQL delete", raw["token"], raw_delete))
    return made


def warm(site: Site, found: list[Victim]) -> None:
    """Every running process has checked (and cached) every victim."""
    with httpx.Client(timeout=30) as client:
        for v in found:
            for name in site.followers():
                if name in site.services:
                    assert accepted_by_service(site, name, v.token, client), (name, v.path)
                else:
                    assert active_at_replica(site, name, v.token, client), (name, v.path)
                    assert notebook_at_replica(site, name, v.token, client) is not None
                    if v.parent is not None:
                        answer = notebook_at_replica(site, name, v.parent, client)
                        assert answer is not None and answer["token"] == v.token, (name, v.path)


def refused_everywhere(site: Site, found: list[Victim], names: list[str]) -> list[str]:
    """What any of ``names`` still accepts (empty: every victim refused at every process)."""
    accepted = []
    with httpx.Client(timeout=30) as client:
        for v in found:
            for name in names:
                if name in site.services:
                    if accepted_by_service(site, name, v.token, client):
                        accepted.append(f"{name} accepts the {v.path} token")
                    continue
                if active_at_replica(site, name, v.token, client):
                    accepted.append(f"{name} introspects the {v.path} token as active")
                if notebook_at_replica(site, name, v.token, client) is not None:
                    accepted.append(f"{name} answers the {v.path} token")
                if v.parent is not None:
                    answer = notebook_at_replica(site, name, v.parent, client)
                    if answer is None or answer["token"] == v.token:
                        accepted.append(f"{name} hands out the {v.path} token again")
    return accepted


def vanished(site: Site) -> int:
    with site.admin() as admin:
        return int(admin.get("token-cache/stats").json()["watched"]["vanished"])


def revoke_all(site: Site, found: list[Victim], *, raw_sql: bool = True) -> None:
    before = vanished(site)
    for v in found:
        if v.path != "raw SQL delete" or raw_sql:
            v.revoke()
    if raw_sql:  # the next sweep of described tokens finds the row gone
        deadline = time.monotonic() + 10
        while vanished(site) == before:
            assert time.monotonic() < deadline, "the hub's sweep did not see the raw delete"
            time.sleep(0.1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("who", PROCESSES)
def test_a_revoked_token_is_refused_by_every_process_once_it_is_back(
    whole_site: Site, who: str, mode: str
) -> None:
    site = whole_site
    case = f"{who[:3]}{mode[:2]}"
    found = victims(site, case)
    warm(site, found)
    process = site.process(who)
    raw = next(v for v in found if v.path == "raw SQL delete")
    if who == "hub":
        revoke_all(site, found, raw_sql=False)  # at the hub, before it goes away
        if mode == "freeze":
            before = vanished(site)
            process.freeze()
            raw.revoke()  # while it is frozen
            time.sleep(3)  # every follower notices the cut
            process.thaw()
            deadline = time.monotonic() + 10
            while vanished(site) == before:  # the overdue sweep runs first thing
                assert time.monotonic() < deadline, "the hub's sweep did not see the raw delete"
                time.sleep(0.1)
        else:
            process.stop() if mode == "stop" else process.kill()
            raw.revoke()  # while it is down
            site.hub.start()
        site.wait_connected()
    else:
        process.freeze() if mode == "freeze" else getattr(process, mode)()
        revoke_all(site, found)
        if mode == "freeze":
            time.sleep(1.5)  # longer than two heartbeats: it cannot know it missed nothing
            process.thaw()
        else:
            process.start()
    assert refused_everywhere(site, found, site.followers()) == []
    # brand-new processes, started after the revocation
    newcomers = [REPLICAS[-1], SERVICES[-1]]
    for name in newcomers:
        site.process(name).start()
        site.running.add(name)
    try:
        assert refused_everywhere(site, found, newcomers) == []
    finally:
        for name in newcomers:
            site.process(name).stop()
            site.running.discard(name)
