"""Upstream tokens end to end: jupyterhub, GenericOAuthenticator, the test provider, real servers.

One hub for the module (the token cache on Redis, a replica of ``jupyter-token-cache
serve`` beside it), one provider (tests/oidc: refresh tokens rotated at every use, a spent
one revoking the whole grant, logged as GRANT-REVOKED). alice logs in through the
provider's pages and starts three servers, whose own API tokens are the credentials of
the requests here, as a notebook's would be. Tokens of the hub's login client live
LIFETIME seconds: "at expiry" is a request for AT_EXPIRY seconds once the token has less.
Target tokens live 10 minutes, so that 1,000 requests fit in one token's life.
The tests build on each other, in order; the last ones log alice out and scan everything.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from ..hub.openapi import check
from ..hubprocess import HubProcess
from ..oidc.server import GRANT_REVOKED, HUB_LOGIN, OIDCProvider
from ..serve.replicas import Replica
from ..servers import MissingBinary, RedisServer, free_port, unavailable
from ..upstream.outbound import running_provider
from .upstream import UPSTREAM_SCOPE, at_once, auth_state, config, events, spawn, upstream

LIFETIME, AT_EXPIRY = 30, 10
REFRESHES = "POST /token refresh_token 200"
EXCHANGES = "POST /token urn:ietf:params:oauth:grant-type:token-exchange 200"
SERVERS = ["", "one", "two"]
REPLICA = """
c.JupyterHub.services.append({{"name": "token-cache", "url": "http://127.0.0.1:{port}",
                               "api_token": {token!r}}})
c.JupyterHub.load_roles.append({{"name": "token-cache", "services": ["token-cache"],
    "scopes": ["custom:token-cache:introspect", "custom:token-cache:events"]}})
"""


@dataclass
class Site:
    hub: HubProcess
    provider: OIDCProvider
    replica: Replica
    alice: httpx.Client
    #: Each server's probe findings, by server name.
    probes: dict[str, dict[str, Any]]
    #: Every answer of the upstream route (their access tokens are the point of them).
    answers: list[dict[str, Any]] = field(default_factory=list)
    #: Refresh and ID tokens seen in an auth state: in no answer, log, event or value.
    never: set[str] = field(default_factory=set)

    @property
    def servers(self) -> list[str]:
        return [self.probes[name]["api_token"] for name in SERVERS]

    def ask(
        self, token: str, body: dict[str, Any] | None = None, base: str | None = None
    ) -> httpx.Response:
        r = upstream(self.hub, token, body, base=base)
        check("POST", r.request.url.path, r.status_code, r.json())  # as the REST API page says
        if r.status_code == 200:
            self.answers.append(r.json())
        return r

    def many(self, bodies: list[dict[str, Any]], get: int = 0) -> list[httpx.Response]:
        """The route's requests at once, from alice's servers in turn, and ``get`` requests
        of ``GET /hub/api/user`` among them (:func:`at_once`)."""
        url = f"{self.hub.url}/hub/api/token-cache/upstream"
        me = f"{self.hub.url}/hub/api/user"
        calls = [("POST", url, self.servers[n % 3], body) for n, body in enumerate(bodies)]
        calls += [("GET", me, self.servers[n % 3], None) for n in range(get)]
        answers = at_once(self.hub, calls)
        for r in answers:
            check(r.request.method, r.request.url.path, r.status_code, r.json())
        self.answers += [r.json() for r in answers[: len(bodies)] if r.status_code == 200]
        return answers

    def state(self, user: str = "alice") -> dict[str, Any]:
        found = auth_state(self.hub, user)
        self.never |= {found.get(k) for k in ("refresh_token", "id_token") if found.get(k)}
        return found


@pytest.fixture(scope="module")
def provider() -> Iterator[OIDCProvider]:
    # its userinfo takes a token 1 s past expiry (oidc-provider's own default is 15 s)
    yield from running_provider(
        hub_access_ttl=LIFETIME, target_ttl=600, persist=True, clock_tolerance=1
    )


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
    provider: OIDCProvider,
    redis_server: RedisServer,
    crypt_key: str,
) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("upstream")
    port, token = free_port(), secrets.token_hex(16)
    text = config(workdir, provider, crypt_key, redis_url=redis_server.url, refresh_age=5)
    try:
        hub = HubProcess(workdir, text + REPLICA.format(port=port, token=token))
    except MissingBinary as e:
        unavailable(e)
    replica = Replica(
        hub,
        "token-cache",
        port,
        token,
        "--TokenCache.backend=redis",
        f"--TokenCache.url={redis_server.url}",
        f"--TokenCache.encryption_key={crypt_key}",
        f"--TokenCache.namespace=upstream-edge-{workdir.name}",
    )
    replica.spawn()
    try:
        hub.start()
        replica.wait()
        alice = provider.log_in(hub.url, "alice")
        found = Site(hub, provider, replica, alice, spawn(hub, "alice", SERVERS))
        yield found
    finally:
        replica.stop()
        hub.stop()


def at_expiry(site: Site) -> str:
    """Wait until the login's token has less than AT_EXPIRY seconds left; its value."""
    answer = site.ask(site.servers[0]).json()
    if answer["expires_in"] >= AT_EXPIRY:
        time.sleep(answer["expires_in"] - AT_EXPIRY + 1.2)  # whole seconds: up to 1 more
    return str(answer["access_token"])


def active(site: Site, token: str) -> bool:
    r = httpx.post(
        f"{site.provider.url}/token/introspection", data={"token": token}, auth=HUB_LOGIN
    )
    return bool(r.json().get("active"))


def test_each_server_gets_the_users_token_with_one_line(site: Site) -> None:
    for name, found in site.probes.items():
        assert "error" not in found, (name, found)
        assert found["token_type"] == "Bearer" and 0 < found["expires_in"] <= LIFETIME
        # the provider's userinfo, a service that trusts its tokens, called with each auth
        assert found["userinfo_httpx"] == found["userinfo_requests"] == "alice"


def test_a_hundred_requests_at_expiry_from_three_servers_one_refresh_one_token(
    site: Site,
) -> None:
    provider = site.provider
    old = at_expiry(site)
    refreshes, revoked = provider.requests(REFRESHES), provider.requests(GRANT_REVOKED)
    answers = site.many([{"minimum_lifetime": AT_EXPIRY}] * 100)
    made = provider.requests(REFRESHES) - refreshes
    tokens = {r.json()["access_token"] for r in answers if r.status_code == 200}
    print(
        f"\n100 requests at expiry from 3 servers: {made} refresh, {len(tokens)} token, "
        f"{provider.requests(GRANT_REVOKED) - revoked} grant revoked"
    )
    assert {r.status_code for r in answers} == {200}
    assert made == 1 and len(tokens) == 1 and old not in tokens
    assert provider.requests(GRANT_REVOKED) == revoked
    assert active(site, tokens.pop())  # the grant lives
    assert site.state()["access_token"] in {a["access_token"] for a in site.answers[-100:]}


def test_jupyterhubs_own_refresh_and_the_route_refresh_once_between_them(site: Site) -> None:
    """After auth_refresh_age (5 s here), each request of alice's makes JupyterHub call
    refresh_user: oauthenticator's asks the provider's userinfo with the access token and,
    once the token has expired, refreshes. Half the requests are the documented approach's
    (GET /hub/api/user), half the route's: both paths want to refresh at once. The mixin
    runs JupyterHub's refresh in the same section as the route's, so there is one."""
    provider = site.provider
    current = site.ask(site.servers[0]).json()
    time.sleep(current["expires_in"] + provider.clock_tolerance + 2)  # userinfo refuses it
    refreshes, userinfo = provider.requests(REFRESHES), provider.requests("GET /me")
    revoked = provider.requests(GRANT_REVOKED)
    answers = site.many([{"minimum_lifetime": AT_EXPIRY}] * 50, get=50)
    statuses = {r.status_code for r in answers}
    made = provider.requests(REFRESHES) - refreshes
    print(
        f"\n50 GET /hub/api/user + 50 upstream requests, both wanting a refresh: {made} "
        f"refresh, {provider.requests('GET /me') - userinfo} userinfo calls, "
        f"{provider.requests(GRANT_REVOKED) - revoked} grant revoked"
    )
    assert statuses == {200} and made == 1
    assert provider.requests(GRANT_REVOKED) == revoked
    assert active(site, site.state()["access_token"])


def test_a_target_token_has_its_audience_and_scopes_only_and_is_made_once(site: Site) -> None:
    provider = site.provider
    login = site.ask(site.servers[0], {"minimum_lifetime": AT_EXPIRY}).json()  # fresh
    assert {"s3:read", "s3:write", "api:read"} <= set(login["scope"].split())
    s3 = site.ask(site.servers[1], {"target": "s3"}).json()
    claims = jwt.decode(s3["access_token"], options={"verify_signature": False})
    assert (claims["aud"], claims["scope"], s3["scope"]) == ("s3", "s3:read", "s3:read")
    calls, before = provider.requests("POST /token"), provider.requests(EXCHANGES)
    started = time.monotonic()
    answers = site.many([{"target": "api"}] * 1000)
    took = time.monotonic() - started
    made = provider.requests("POST /token") - calls
    tokens = {r.json()["access_token"] for r in answers}
    exchanges = provider.requests(EXCHANGES) - before
    print(
        f"\n1,000 requests for a target from 3 servers in {took:.1f} s: {exchanges} provider "
        f"call for it ({made - exchanges} refresh(es) of the login by JupyterHub's refresh_user "
        f"meanwhile), {len(tokens)} token"
    )
    assert exchanges == 1 and len(tokens) == 1
    token = tokens.pop()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["aud"], claims["scope"], claims["sub"]) == ("internal-api", "api:read", "alice")
    # reused while it has the minimum asked for; past it, a new one
    again = site.ask(site.servers[2], {"target": "api", "minimum_lifetime": 60}).json()
    assert again["access_token"] == token and again["cached"] is True
    wanted = again["expires_in"] + 1  # more than it has left
    later = site.ask(site.servers[2], {"target": "api", "minimum_lifetime": wanted}).json()
    assert later["access_token"] != token and provider.requests(EXCHANGES) - before == 2
    # another user's credential never gets it
    bob = provider.log_in(site.hub.url, "bob")
    bob.close()
    with site.hub.admin() as api:
        bobs = api.post("users/bob/tokens", json={"scopes": [UPSTREAM_SCOPE]}).json()["token"]
    theirs = site.ask(bobs, {"target": "api"}).json()
    assert theirs["access_token"] not in (token, later["access_token"])
    assert jwt.decode(theirs["access_token"], options={"verify_signature": False})["sub"] == "bob"


def test_who_may_ask(site: Site) -> None:
    with site.hub.admin() as api:
        narrow = api.post("users/alice/tokens", json={"scopes": ["read:users!user"]}).json()
    r = site.ask(narrow["token"])
    assert r.status_code == 403 and UPSTREAM_SCOPE in r.json()["message"]
    r = site.ask(site.servers[0], {"target": "nope"})
    assert r.status_code == 404 and r.json()["status"] == 404
    r = site.ask(site.servers[0], {"target": "s3", "scopes": ["s3:write"]})
    assert r.status_code == 400 and "Unknown field" in r.json()["message"]


def test_a_replica_passes_the_route_to_the_hub(site: Site) -> None:
    base = f"{site.replica.url}"
    at_hub = site.ask(site.servers[0], {"target": "s3"}).json()
    through = site.ask(site.servers[1], {"target": "s3"}, base=base)
    assert through.status_code == 200, through.text
    assert through.json()["access_token"] == at_hub["access_token"] and through.json()["cached"]
    refused = site.ask("not-a-token", base=base)
    assert (
        refused.status_code == 403 and refused.json()["message"] == "Missing or invalid credentials"
    )


def test_stats_count_requests_and_provider_calls(site: Site) -> None:
    with site.hub.admin() as api:
        stats = api.get("token-cache/stats").json()["upstream"]
    print("\nupstream stats:", json.dumps(stats))
    assert stats["requests"] >= 1100 and stats["hits"] > 100 * stats["misses"]
    assert stats["provider_calls"] < 20 and stats["provider_errors"] == 0


def test_logout_ends_the_upstream_session(site: Site) -> None:
    before = site.state()
    r = site.alice.get(f"{site.hub.url}/hub/logout")
    assert r.status_code in (200, 302)
    for base in (None, site.replica.url):
        refused = upstream(site.hub, site.servers[0], base=base)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "login_required"
        assert "log in" in refused.json()["message"]
    gone = site.state()
    assert "refresh_token" not in gone and "access_token" not in gone
    assert gone["token_cache"]["ended"] == "logout"
    deadline = time.monotonic() + 10  # revoked at the provider, in the background
    while active(site, before["access_token"]):
        assert time.monotonic() < deadline, "the upstream tokens were not revoked"
        time.sleep(0.1)
    text = events(site.hub)
    assert '"type": "upstream-session-ended"' in text and '"reason": "logout"' in text
    # a new login is a new session: tokens again, none of the old session's
    site.alice = site.provider.log_in(site.hub.url, "alice")
    again = site.ask(site.servers[0])
    assert again.status_code == 200 and again.json()["access_token"] != before["access_token"]
    site.state()


def test_an_admins_reset_and_a_users_deletion_end_the_upstream_session(site: Site) -> None:
    with site.hub.admin() as api:
        bobs = api.post("users/bob/tokens", json={"scopes": [UPSTREAM_SCOPE]}).json()["token"]
        assert site.ask(bobs).status_code == 200
        assert api.delete("token-cache/users/bob", params={"revoke": "true"}).status_code == 200
        refused = site.ask(bobs)
        assert refused.status_code == 401 and refused.json()["error"] == "login_required"
        site.provider.log_in(site.hub.url, "carol").close()
        carol = site.state("carol")
        assert api.delete("users/carol").status_code == 204
    deadline = time.monotonic() + 10  # revoked at the provider
    while active(site, carol["access_token"]):
        assert time.monotonic() < deadline, "carol's upstream tokens were not revoked"
        time.sleep(0.1)
    text = events(site.hub)
    assert '"reason": "admin-reset"' in text and '"reason": "user-deleted"' in text


def test_provider_killed_or_frozen_cached_tokens_then_503_then_recovery(site: Site) -> None:
    """c.UpstreamTokens.timeout is 5 s (the default). The provider keeps its grants in a
    file, as a real one keeps them in a database, so one started again knows them."""
    provider, timeout = site.provider, 5.0
    fresh = site.ask(site.servers[0], {"minimum_lifetime": AT_EXPIRY}).json()
    need, revoked = LIFETIME - 3, provider.requests(GRANT_REVOKED)
    for fault, heal in ((provider.kill, provider.start), (provider.pause, provider.resume)):
        before = site.state()["refresh_token"]
        fault()
        try:
            served = site.ask(site.servers[1], {"minimum_lifetime": 5})  # meets it: from the cache
            assert served.status_code == 200, served.text
            time.sleep(max(0.0, served.json()["expires_in"] - need + 1.2))  # now it does not
            started = time.monotonic()
            refused = [
                upstream(site.hub, site.servers[2], {"minimum_lifetime": need}, base=base)
                for base in (None, site.replica.url)
            ]
            took = (time.monotonic() - started) / 2
            for r in refused:
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "temporarily_unavailable" and r.headers["Retry-After"]
            print(f"\n{fault.__name__}: cached token served; 503 in {took:.1f} s")
            assert took < timeout + 1
        finally:
            heal()
        deadline = time.monotonic() + 30  # what was sent to the frozen provider, kept
        while (found := site.ask(site.servers[0], {"minimum_lifetime": need})).status_code != 200:
            assert time.monotonic() < deadline, found.text
            time.sleep(0.5)
        assert found.json()["access_token"] != fresh["access_token"]
        assert site.state()["refresh_token"] != before
    assert provider.requests(GRANT_REVOKED) == revoked  # no spent refresh token went back


def test_no_refresh_token_id_token_or_client_secret_anywhere(
    site: Site, redis_server: RedisServer
) -> None:
    store = Path(site.provider.store or "")
    kept = [json.loads(line) for line in store.read_text().splitlines()]
    issued = {k["id"] for k in kept if k["model"] == "RefreshToken" and k["op"] == "upsert"}
    never = site.never | issued | {HUB_LOGIN[1]}
    assert len(issued) >= 5  # every refresh token the provider gave, rotations included
    handed = {a["access_token"] for a in site.answers}
    answers = json.dumps(site.answers)
    assert not [s for s in never if s in answers], "a refresh token or secret in an answer"
    logs = site.hub.log() + site.replica.log_path.read_text()
    assert not [s for s in never | handed if s in logs], "a token in the hub's log"
    stream = events(site.hub)
    assert not [s for s in never | handed if s in stream], "a token in an event"
    for name, value in redis_server.dump().items():
        assert not [s for s in never | handed if s in name or s.encode() in value], name
    print(
        f"\nscanned: {len(site.answers)} answers, {len(logs)} bytes of logs, "
        f"{len(stream)} bytes of events, Redis; for {len(never)} refresh/ID tokens and "
        f"secrets and {len(handed)} access tokens: none found"
    )
