"""Fuzzing both adapters with the same requests: the hub's routes and a real replica's.

Each generated request (tests/fuzz.py: duplicated parameters, form against JSON, control
characters and non-ASCII text in every field and header) goes to the ``jupyterhub``
command's ``/hub/api/token-cache`` and to a ``jupyter-token-cache serve`` replica behind
the proxy. Both must answer the same status — one parser refuses the same inputs in both
modes — with no 5xx, no token wider than the same request without its duplicate, and no
secret in a response; afterwards no secret is in the hub's or the replicas' logs. The
tally per adapter and route is printed (``-s``).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from ..fuzz import (
    Built,
    Request,
    Tally,
    build,
    leaked,
    raw_request_sync,
    repeats,
    requests,
    sendable_by_httpx,
    widened,
)
from ..hub.openapi import check
from ..oidc.server import OIDCProvider
from .conftest import Setup
from .replicas import user_token

pytestmark = [pytest.mark.e2e, pytest.mark.redis]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
TALLY = Tally()


@pytest.fixture(scope="module")
def fuzzed(setup: Setup, oidc_provider: OIDCProvider) -> Iterator[dict[str, Any]]:
    """One of each kind of credential; afterwards, every secret looked for in the logs."""
    hub, (replica, _) = setup
    user = user_token(hub, "fuzz-alice")["token"]
    made: dict[str, str | None] = {
        "none": None,
        "garbage": "0" * 32,
        "user": user,
        "narrow": user_token(hub, "fuzz-alice", scopes=["read:users:name!user"])["token"],
        "admin": hub.service_token,
        "checker": replica.token,  # a replica's own token holds the introspection scope
        "upstream": oidc_provider.token("fuzz-alice", "urn:hub:opaque"),
    }
    headers = {"Authorization": f"token {user}"}
    base = f"{hub.url}/hub/api/token-cache"
    made["notebook"] = httpx.post(f"{base}/notebook", headers=headers, json={}).json()["token"]
    made["internal"] = httpx.post(
        f"{base}/internal", headers=headers, json={"service": "dask"}
    ).json()["token"]
    state = {"made": made, "secrets": {v for v in made.values() if v and v != "0" * 32}}
    yield state
    logs = hub.log() + "".join(r.log_path.read_text() for r in setup[1])
    in_logs = leaked(logs, state["secrets"])
    TALLY.checks["secrets in logs"] += len(in_logs)
    print(
        "\nboth adapters, the same requests (the jupyterhub command and a serve replica):\n"
        + TALLY.table()
    )
    assert not in_logs, "a secret in the hub's or a replica's log"


def send(url: str, built: Built) -> tuple[int, bytes]:
    """httpx when it can send the headers, else a raw socket."""
    parsed = urllib.parse.urlparse(url)
    target = parsed.path.rstrip("/") + built.target
    if all(sendable_by_httpx(v) for _, v in built.headers):
        r = httpx.request(
            built.method,
            f"{parsed.scheme}://{parsed.netloc}{target}",
            headers=built.headers,
            content=built.body,
            timeout=30,
        )
        return r.status_code, r.content
    return raw_request_sync(
        parsed.hostname or "127.0.0.1",
        parsed.port or 80,
        built.method,
        target,
        built.headers,
        built.body,
    )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_fuzz_both_adapters_alike(setup: Setup, fuzzed: dict[str, Any], request: Request) -> None:
    hub, (replica, _) = setup
    made, secrets = fuzzed["made"], fuzzed["secrets"]
    answers = {}
    for adapter, url, prefix in (
        ("hub", hub.url, "/hub/api/token-cache"),
        ("replica", replica.url, ""),
    ):
        built = build(request, made, prefix)
        status, content = send(url, built)
        TALLY.add(adapter, request.route.label, status)
        assert status < 500, (adapter, request.route.label, content[:300])
        answers[adapter] = (status, content, built)
    (hub_status, hub_content, _), (status, content, built) = answers["hub"], answers["replica"]
    assert status == hub_status, (request, hub_content[:300], content[:300])
    TALLY.checks["same status at both"] += 1
    TALLY.checks["with a duplicate"] += repeats(built.pairs) or repeats(request.query)
    TALLY.checks["widened"] += 0  # counted below, for an answer with a token
    for adapter, (status, content, built) in answers.items():
        if not content:  # Tornado's HTTP parser refused a header (at the proxy or the server)
            assert status == 400, (adapter, status)
            TALLY.checks["refused by the HTTP parser"] += 1
            continue
        answer = json.loads(content)
        if adapter == "hub":
            check(
                built.method,
                "/hub/api/token-cache"
                + built.target.partition("?")[0].removeprefix("/hub/api/token-cache"),
                status,
                answer,
            )
        issued = answer.get("token") if status == 200 and isinstance(answer, dict) else None
        if issued:
            secrets.add(issued)
        found = leaked(content.decode("utf-8", "replace"), secrets, allowed=issued)
        TALLY.checks["secrets leaked"] += len(found)
        assert not found, f"{adapter} answered a secret"
        if issued and (repeats(built.pairs) or repeats(request.query)):
            url = hub.url if adapter == "hub" else replica.url
            alone_status, alone = send(url, built.without_duplicates(request))
            wider = widened(answer, json.loads(alone) if alone_status == 200 else None)
            TALLY.checks["widened"] += wider
            assert not wider, (adapter, request)
