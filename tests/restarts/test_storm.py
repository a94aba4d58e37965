"""A storm across restarts: revocations, id reuse and restarts of replicas and the service, at once.

About 2,000 operations at concurrency 10 (seeded), on the real hub, two replicas and a
CachedHubAuth service sharing one Redis: tokens are created (SQLite gives a deleted
row's id to the next one, so ids are reused by other users), children are minted at the
replicas, tokens end every way the hub offers (token delete, parent cascade, user
deletion, logout, admin reset with revoke, raw SQL), and every check asks a random
process about a random token. Meanwhile a controller stops, kills or freezes a replica
or the service and brings it back. Counted: revoked tokens served (must be 0), valid
tokens refused (must be 0: a false refusal is an outage), and, in a quiet second after
each restart, the hub calls of the restarted process against the distinct tokens it
was asked about (each re-validated at most once).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from .site import REPLICAS, SERVICES, Site

pytestmark = pytest.mark.e2e

SEED = 2126
OPERATIONS = 2000
CONCURRENCY = 10
USERS = [f"storm{i}" for i in range(12)]
FOLLOWERS = [REPLICAS[0], REPLICAS[1], SERVICES[0]]

VALID, ENDING, ENDED = "valid", "ending", "ended"


@dataclass
class Token:
    token: str
    id: str
    user: str
    kind: str  # "api", "child" (minted at a replica) or "login"
    parent: Token | None = None
    state: str = VALID
    ended_at: float = 0.0


@dataclass
class Ledger:
    """What the storm knows: every token and its state, and what it saw."""

    tokens: list[Token] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    #: (process, token) asked, with the time: for the quiet windows after restarts.
    asked: list[tuple[float, str, str]] = field(default_factory=list)
    quiet: threading.Event = field(default_factory=threading.Event)

    def add(self, token: Token) -> None:
        with self.lock:
            self.tokens.append(token)

    def ending(self, tokens: list[Token]) -> list[Token]:
        with self.lock:
            found = [t for t in tokens if t.state == VALID]
            for t in found:
                t.state = ENDING
            return found

    def ended(self, tokens: list[Token]) -> None:
        now = time.monotonic()
        with self.lock:
            for t in tokens:
                t.state, t.ended_at = ENDED, now

    def of(self, user: str) -> list[Token]:
        with self.lock:
            return [t for t in self.tokens if t.user == user and t.state == VALID]


def ask(
    site: Site, process: str, token: str, client: httpx.Client, rng: random.Random
) -> bool | None:
    """Whether ``process`` accepts ``token`` (None: it did not answer — down or frozen)."""
    try:
        if process in site.services:
            r = client.get(site.services[process].url, headers={"Authorization": f"token {token}"})
            return None if r.status_code >= 500 else r.status_code == 200
        base = site.replicas[process].url
        if rng.random() < 0.5:  # as the admin service (a credential the replica checks too)
            r = client.post(f"{base}/introspect", json={"token": token},
                            headers={"Authorization": f"token {site.hub.service_token}"})  # fmt: skip
            return None if r.status_code != 200 else bool(r.json()["active"])
        r = client.post(f"{base}/notebook", json={}, headers={"Authorization": f"token {token}"})
        return None if r.status_code >= 500 else r.status_code == 200
    except httpx.HTTPError:
        return None


class Storm:
    def __init__(self, site: Site, rng: random.Random) -> None:
        self.site = site
        self.rng = rng
        self.ledger = Ledger()
        self.admin = site.admin()
        self.admin_lock = threading.Lock()
        #: One operation at a time that creates or ends a user's tokens, so that the
        #: ledger knows exactly which tokens each end takes (checks take no lock).
        self.user_locks = {user: threading.Lock() for user in USERS}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.admin_lock:
            return self.admin.request(method, path, **kwargs)

    # -- making tokens ---------------------------------------------------------------------

    def create(self, user: str) -> None:
        with self.user_locks[user]:
            self.api("POST", f"users/{user}")
            r = self.api("POST", f"users/{user}/tokens", json={})
            assert r.status_code == 201, r.text
            self.ledger.add(Token(r.json()["token"], r.json()["id"], user, "api"))

    def child(self, parent: Token, client: httpx.Client) -> None:
        replica = self.site.replicas[self.rng.choice(REPLICAS[:2])]
        with self.user_locks[parent.user]:
            if parent.state != VALID:
                return
            try:
                r = client.post(f"{replica.url}/notebook", json={},
                                headers={"Authorization": f"token {parent.token}"})  # fmt: skip
            except httpx.HTTPError:
                return  # that replica is away
            if r.status_code == 200 and not r.json()["cached"]:
                made = Token(r.json()["token"], r.json()["id"], parent.user, "child", parent)
                self.ledger.add(made)

    # -- ending tokens ---------------------------------------------------------------------

    def end(self, tokens: list[Token], action: Any) -> None:
        doomed = self.ledger.ending(tokens)
        if doomed:
            action()
            self.ledger.ended(doomed)
            self.ledger.counts["ended"] += len(doomed)

    def revoke(self, client: httpx.Client) -> None:
        user = self.rng.choice(USERS)
        with self.user_locks[user]:
            self._revoke(user)

    def _revoke(self, user: str) -> None:
        mine = self.ledger.of(user)
        apis = [t for t in mine if t.kind == "api"]
        way = self.rng.choice(["delete", "cascade", "user", "reset", "raw", "logout"])
        self.ledger.counts[f"way:{way}"] += 1
        if way in ("delete", "cascade") and apis:
            victim = self.rng.choice(apis)
            children = [t for t in mine if t.parent is victim]
            self.end(
                [victim, *children], lambda: self.api("DELETE", f"users/{user}/tokens/{victim.id}")
            )
        elif way == "user" and mine:
            self.end(mine, lambda: self.api("DELETE", f"users/{user}"))
        elif way == "reset":
            children = [t for t in mine if t.kind != "api"]
            self.end(children, lambda: self.api("DELETE", f"token-cache/users/{user}",
                                                params={"revoke": "true"}))  # fmt: skip
        elif way == "raw" and apis:
            victim = self.rng.choice(apis)
            children = [t for t in mine if t.parent is victim]
            self.end([victim, *children], lambda: self.raw_delete(victim, children))
        elif way == "logout":
            self.logout(user)

    def raw_delete(self, victim: Token, children: list[Token]) -> None:
        """Delete the row by SQL, then wait for the hub's sweeps: the one of described
        tokens reports it (if any process ever asked about it), the lineage one revokes
        its children."""
        before = self.vanished()
        with self.site.db() as db:
            db.execute("DELETE FROM api_tokens WHERE id = ?", (int(victim.id[1:]),))
        deadline = time.monotonic() + 2.5  # the sweep runs every second
        while self.vanished() == before and time.monotonic() < deadline:
            time.sleep(0.05)
        for child in children:
            while self.active_at_hub(child):
                assert time.monotonic() < deadline + 5, "the sweep left a child of a deleted row"
                time.sleep(0.05)

    def active_at_hub(self, token: Token) -> bool:
        r = self.api("POST", "token-cache/introspect", json={"token": token.token})
        return bool(r.json()["active"])

    def vanished(self) -> int:
        return int(self.api("GET", "token-cache/stats").json()["watched"]["vanished"])

    def logout(self, user: str) -> None:
        with httpx.Client(base_url=f"{self.site.hub.hub_url}/hub/", timeout=30) as browser:
            page = browser.get("login")
            xsrf = browser.cookies.get("_xsrf") or re.search(
                r'name="_xsrf" value="([^"]+)"', page.text
            ).group(1)  # type: ignore[union-attr]
            browser.post("login", data={"username": user, "password": user, "_xsrf": xsrf})
            browser.headers.update({"X-XSRFToken": browser.cookies.get("_xsrf") or xsrf,
                                    "Sec-Fetch-Mode": "cors"})  # fmt: skip
            r = browser.post("api/token-cache/notebook", json={})
            assert r.status_code == 200, r.text
            login = Token(r.json()["token"], r.json()["id"], user, "login")
            self.ledger.add(login)
            self.check_one(login, httpx.Client(timeout=10))
            self.end([login], lambda: browser.get("logout"))

    # -- checking --------------------------------------------------------------------------

    def check_one(self, token: Token, client: httpx.Client) -> None:
        process = self.rng.choice([p for p in FOLLOWERS if p in self.site.running])
        with self.ledger.lock:
            state_before = token.state
        started = time.monotonic()
        accepted = ask(self.site, process, token.token, client, self.rng)
        with self.ledger.lock:
            state_after = token.state
            self.ledger.asked.append((started, process, token.token))
            if process in self.site.replicas:
                self.ledger.asked.append((started, process, self.site.hub.service_token))
        if accepted is None:
            self.ledger.counts["unanswered"] += 1
            return
        self.ledger.counts["checks"] += 1
        if state_before == ENDED and accepted:
            self.ledger.wrong.append(f"{process} accepted a {token.kind} token {token.id} "
                                     f"ended {started - token.ended_at:.2f} s before")  # fmt: skip
        elif state_before == VALID and state_after == VALID and not accepted:
            self.ledger.wrong.append(f"{process} refused a valid {token.kind} token {token.id}")

    def operation(self, n: int) -> None:
        with httpx.Client(timeout=10) as client:
            if self.ledger.quiet.is_set() or self.rng.random() < 0.6:
                with self.ledger.lock:
                    known = list(self.ledger.tokens)
                if known:
                    self.check_one(self.rng.choice(known), client)
                return
            roll = self.rng.random()
            if roll < 0.35:
                self.create(self.rng.choice(USERS))
            elif roll < 0.6:
                apis = [t for t in self.ledger.of(self.rng.choice(USERS)) if t.kind == "api"]
                if apis:
                    self.child(self.rng.choice(apis), client)
            else:
                self.revoke(client)


def stats_of(site: Site, process: str) -> dict[str, Any]:
    """The restarted process's own counters: hub calls and hits."""
    if process in site.services:
        return site.services[process].stats()  # type: ignore[no-any-return]
    r = httpx.get(f"{site.replicas[process].url}/stats",
                  headers={"Authorization": f"token {site.hub.service_token}"}, timeout=10)  # fmt: skip
    return r.json()["replica"]["checks"]  # type: ignore[no-any-return]


def hub_calls(site: Site, process: str) -> int:
    """Introspections ``process`` has made since it started."""
    stats = stats_of(site, process)
    return int(stats.get("hub_calls", 0))


def test_a_storm_across_restarts_serves_no_revoked_token_and_refuses_no_valid_one(
    whole_site: Site, tmp_path: Path
) -> None:
    site = whole_site
    rng = random.Random(SEED)
    storm = Storm(site, rng)
    for user in USERS:
        for _ in range(3):
            storm.create(user)
    restarts: list[dict[str, Any]] = []
    done = threading.Event()

    def controller() -> None:
        while not done.wait(1.5):
            name = rng.choice(FOLLOWERS)
            mode = rng.choice(["stop", "kill", "freeze"])
            process = site.process(name)
            site.running.discard(name)
            began = time.monotonic()
            if mode == "freeze":
                before = hub_calls(site, name)
                process.freeze()
                time.sleep(2)  # revocations go on meanwhile
                storm.ledger.quiet.set()  # then a quiet second: checks only
                time.sleep(0.3)  # for operations under way to finish
                process.thaw()
            else:
                getattr(process, mode)()
                time.sleep(0.5)  # revocations go on meanwhile
                storm.ledger.quiet.set()
                process.start()
                before = hub_calls(site, name)  # after its start-up check
                began = time.monotonic()
            site.running.add(name)
            time.sleep(1)
            storm.ledger.quiet.clear()
            calls = hub_calls(site, name) - before
            with storm.ledger.lock:
                distinct = {t for at, p, t in storm.ledger.asked if p == name and at >= began}
            restarts.append({"process": name, "mode": mode, "hub_calls": calls,
                             "distinct_tokens_asked": len(distinct)})  # fmt: skip

    control = threading.Thread(target=controller, daemon=True)
    control.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(storm.operation, range(OPERATIONS)))
    finally:
        done.set()
        control.join(60)
    took = time.monotonic() - started
    counts = storm.ledger.counts
    report = {"seed": SEED, "operations": OPERATIONS, "seconds": round(took, 1),
              "counts": dict(counts), "restarts": restarts,
              "revoked_served": sum("accepted" in w for w in storm.ledger.wrong),
              "valid_refused": sum("refused" in w for w in storm.ledger.wrong)}  # fmt: skip
    (tmp_path / "storm.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))  # the figures for the closing note (pytest -s)
    assert storm.ledger.wrong == []
    assert counts["checks"] > OPERATIONS / 2 and counts["ended"] > 50 and len(restarts) >= 5
    assert all(r["hub_calls"] <= r["distinct_tokens_asked"] for r in restarts), restarts
