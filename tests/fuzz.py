"""What the fuzz tests of both adapters share: the inputs an attacker would try, and the tally.

Strategies for every field and header of the token routes — duplicates (a JSON key, a
form field, a query parameter given twice), form against JSON, control characters and
non-ASCII text — and a raw HTTP/1.1 sender for the header bytes httpx refuses to send.
:class:`Tally` counts requests and statuses per adapter and route, and the checks each
answer must pass: no 5xx, no token wider than the same request without its duplicate,
no secret in a response.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"

#: Characters an attacker reaches for: controls (NUL, CR, LF, ESC, DEL), Latin-1, other
#: scripts, a right-to-left override, quotes and percent signs.
NASTY = "\x00\r\n\t\x1b\x7f\x85é\u00a0\u202e\u2028中\"'%&=;, "
nasty_text = st.text(
    alphabet=st.sampled_from(NASTY) | st.characters(exclude_categories=("Cs",)), max_size=24
)
#: Scopes, from well formed to what the edge cache's key once confused.
scopes = (
    st.sampled_from(
        [
            "read:users!user",
            "access:services!service=dask",
            "read:users:name!user",
            "admin:users",
            "*",
            "read:users!user access:services!service=dask",
            "read:users!user\n",
            " read:users!user",
            "read:users!user=",
            "read:users!group=",
            "",
            "inherit",
            "self",
            "read:users!user=é",
            "custom:token-cache:admin",
            "read:users!user\x00",
        ]
    )
    | nasty_text
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | nasty_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner, max_size=3),
    max_leaves=6,
)


def fields(names: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """(name, value) pairs of a body; the same name may come twice (that is the point)."""
    return st.lists(st.tuples(st.sampled_from(names) | nasty_text, values), max_size=5)


@dataclass(frozen=True)
class Route:
    """A route as the fuzz sees it: where, what body, and the credential that may use it."""

    label: str
    method: str
    path: str
    #: "json" (the token routes), "oauth" (form or JSON), or None (no body).
    body: str | None
    credential: str


ROUTES = [
    Route("notebook", "POST", "notebook", "json", "user"),
    Route("internal", "POST", "internal", "json", "user"),
    Route("stats", "GET", "stats", None, "admin"),
    Route("tokens", "GET", "tokens", None, "admin"),
    Route("reset", "DELETE", "", None, "admin"),
    Route("reset user", "DELETE", "users/{name}", None, "admin"),
    Route("introspect", "POST", "introspect", "oauth", "checker"),
    Route("exchange", "POST", "exchange", "oauth", "none"),
    Route("upstream", "POST", "upstream", "json", "user"),
]
#: Every credential a request may carry; "raw" is an arbitrary Authorization header.
CREDENTIALS = [
    "none",
    "garbage",
    "user",
    "narrow",
    "notebook",
    "internal",
    "admin",
    "checker",
    "raw",
]
QUERY_NAMES = ["user", "kind", "service", "offset", "limit", "revoke", "last_event_id"]
#: The fields of an RFC 8693 token exchange request.
EXCHANGE_NAMES = [
    "grant_type",
    "subject_token",
    "subject_token_type",
    "scope",
    "resource",
    "audience",
    "requested_token_type",
]
BODY_NAMES = ["service", "scopes", "minimum_lifetime", "token", *EXCHANGE_NAMES, "target"]
#: A placeholder in a body value: replaced by that credential (introspection, exchange).
PLACEHOLDERS = ["<user>", "<notebook>", "<upstream>", "<garbage>"]
body_values = (
    st.sampled_from(
        ["dask", "short", "nope", GRANT, ACCESS, "read:users!user", "30", "true", *PLACEHOLDERS]
    )
    | st.lists(scopes, min_size=1, max_size=3)
    | st.integers(-5, 10**9)
    | json_values
)
query_values = (
    st.sampled_from(["alice", "notebook", "internal", "dask", "0", "2", "true", "false", "-1", ""])
    | nasty_text
)
#: Well-formed bodies and queries of each route, so that most requests reach the policy.
WELL_FORMED: dict[str, st.SearchStrategy[list[tuple[str, Any]]]] = {
    "notebook": st.sampled_from([[], [("minimum_lifetime", 600)], [("minimum_lifetime", 10**8)]]),
    "internal": st.tuples(
        st.sampled_from(["dask", "short", "nope"]),
        st.none() | st.lists(scopes, min_size=1, max_size=2),
    ).map(lambda t: [("service", t[0])] + ([] if t[1] is None else [("scopes", t[1])])),
    "introspect": st.sampled_from(PLACEHOLDERS + ["x", ""]).map(lambda v: [("token", v)]),
    "upstream": st.sampled_from(
        [
            [],
            [("target", "s3")],
            [("minimum_lifetime", 60)],
            [("target", "nope"), ("minimum_lifetime", 10**8)],
        ]
    ),
    "exchange": st.fixed_dictionaries(
        {
            "grant_type": st.just(GRANT),
            "subject_token": st.just("<upstream>"),
            "subject_token_type": st.just(ACCESS),
        },
        optional={
            "scope": st.sampled_from(
                [
                    "read:users!user",
                    "read:users:name!user",
                    "admin:users",
                    "read:users!user  x",
                    "*",
                ]
            ),
            "resource": st.sampled_from(["dask", "short", "nope"]),
            "audience": st.sampled_from(["dask", "short"]),
        },
    ).map(lambda d: list(d.items())),
    "tokens": st.fixed_dictionaries(
        {},
        optional={
            "user": st.just("alice"),
            "kind": st.sampled_from(["notebook", "internal"]),
            "service": st.just("dask"),
            "limit": st.just("2"),
        },
    ).map(lambda d: list(d.items())),
    "reset": st.sampled_from([[], [("revoke", "false")], [("revoke", "true")]]),
}
WELL_FORMED["reset user"] = WELL_FORMED["reset"]


def with_a_duplicate(
    pairs: st.SearchStrategy[list[tuple[str, Any]]], values: st.SearchStrategy[Any]
) -> st.SearchStrategy[list[tuple[str, Any]]]:
    """``pairs`` with one of its parameters given again (with another value, or the same)."""

    def again(pairs: list[tuple[str, Any]], which: int, value: Any) -> list[tuple[str, Any]]:
        if not pairs:
            return pairs
        name, first = pairs[which % len(pairs)]
        return [*pairs, (name, first if value is None else value)]

    return st.builds(again, pairs, st.integers(0, 9), st.none() | values)


#: A parameter that narrows the answer, given twice: what widened tokens once (the first
#: value alone is narrower than the answer when both were counted as "absent").
_EXCHANGE = [("grant_type", GRANT), ("subject_token", "<upstream>"), ("subject_token_type", ACCESS)]
NARROWING: dict[str, st.SearchStrategy[list[tuple[str, Any]]]] = {
    "exchange": st.one_of(
        st.tuples(
            st.sampled_from(["read:users!user", "read:users:name!user"]),
            st.sampled_from(["read:users!user", "access:servers!user", "read:users"]),
        ).map(lambda t: [*_EXCHANGE, ("scope", t[0]), ("scope", t[1])]),
        st.tuples(
            st.sampled_from(["resource", "audience"]),
            st.sampled_from(["dask", "short"]),
            st.sampled_from(["dask", "short"]),
        ).map(lambda t: [*_EXCHANGE, (t[0], t[1]), (t[0], t[2])]),
    ),
    "internal": st.tuples(
        st.lists(scopes, min_size=1, max_size=2), st.lists(scopes, min_size=1, max_size=2)
    ).map(lambda t: [("service", "dask"), ("scopes", t[0]), ("scopes", t[1])]),
}


@dataclass(frozen=True)
class Request:
    route: Route
    credential: str
    raw_authorization: bytes
    pairs: list[tuple[str, Any]]
    query: list[tuple[str, str]]
    form: bool
    garbage_body: bytes | None
    headers: dict[str, bytes]
    name: str


@st.composite
def requests(draw: Any, routes: list[Route] = ROUTES) -> Request:
    """A request to one of ``routes``: mostly well formed, often with a duplicate, sometimes
    anything at all; mostly with the credential the route wants."""
    route = draw(st.sampled_from(routes))
    credential = draw(st.sampled_from([route.credential] * 3 + CREDENTIALS))
    shape = WELL_FORMED.get(route.label, st.just([]))
    if route.body is None:  # the route reads its query
        query = draw(
            st.one_of(
                shape,
                with_a_duplicate(shape, query_values),
                st.lists(st.tuples(st.sampled_from(QUERY_NAMES), query_values), max_size=3),
            )
        )
        pairs: list[tuple[str, Any]] = []
    else:
        query = draw(
            st.just([])
            | st.lists(st.tuples(st.sampled_from(QUERY_NAMES), query_values), max_size=2)
        )
        duplicate = with_a_duplicate(shape, body_values)
        pairs = draw(
            st.one_of(
                shape,
                shape,
                duplicate,
                NARROWING.get(route.label, duplicate),
                fields(BODY_NAMES, body_values),
            )
        )
    return Request(
        route=route,
        credential=credential,
        raw_authorization=draw(header_bytes),
        pairs=pairs,
        query=query,
        form=draw(st.booleans()),
        garbage_body=draw(st.none() | st.none() | st.none() | st.binary(max_size=30)),
        headers=draw(
            st.just({})
            | st.just({})
            | st.dictionaries(
                st.sampled_from(["Accept", "Content-Type", "Last-Event-ID"]),
                header_bytes,
                max_size=2,
            )
        ),
        name=draw(st.sampled_from(["alice", "bob"]) | nasty_text.filter(bool)),
    )


def json_text(pairs: list[tuple[str, Any]]) -> str:
    """A JSON object written from ``pairs`` as they are, repeated keys included."""
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"


def form_text(pairs: list[tuple[str, Any]]) -> str:
    return urllib.parse.urlencode(
        [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in pairs]
    )


def deduplicated(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``pairs`` with each name's first value only: the same request without its duplicates."""
    seen: set[str] = set()
    return [(k, v) for k, v in pairs if not (k in seen or seen.add(k))]  # type: ignore[func-returns-value]


def repeats(pairs: list[tuple[str, Any]]) -> bool:
    return len({k for k, _ in pairs}) < len(pairs)


#: Header values: printable, with obs-text bytes (Latin-1, which Tornado decodes as such),
#: and with control bytes only a raw sender can put on the wire.
header_bytes = st.binary(max_size=40) | st.sampled_from(
    [
        b"token \xe9\xe9",
        b"Bearer \xff",
        b"token a\x00b",
        b"token \x1b[2J",
        b"token a\tb",
        b"application/x-www-form-urlencoded\xe9",
        b"\x7f",
        b"application/json; charset=\xe9",
    ]
)


def sendable_by_httpx(value: bytes) -> bool:
    """Whether h11 lets httpx send ``value`` as a header value (no controls but tab)."""
    return all(b == 9 or 32 <= b != 127 for b in value) and value == value.strip()


def _request_bytes(
    host: str, port: int, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1".encode(),
        f"Host: {host}:{port}".encode(),
        b"Connection: close",
        f"Content-Length: {len(body)}".encode(),
    ]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _answer(raw: bytes) -> tuple[int, bytes]:
    head, _, content = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if b"transfer-encoding: chunked" in head.lower():
        content = _unchunk(content)
    return status, content


async def raw_request(
    host: str, port: int, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.1 request written byte for byte (header values httpx refuses to send)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(_request_bytes(host, port, method, target, headers, body))
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return _answer(raw)


def raw_request_sync(
    host: str, port: int, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, bytes]:
    """:func:`raw_request`, blocking."""
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(_request_bytes(host, port, method, target, headers, body))
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return _answer(b"".join(chunks))


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        length = int(size.split(b";")[0] or b"0", 16)
        if not length:
            break
        out, data = out + rest[:length], rest[length + 2 :]
    return out


class Tally:
    """Requests and statuses per (adapter, route), and the checks' counts."""

    def __init__(self) -> None:
        self.statuses: defaultdict[tuple[str, str], Counter[int]] = defaultdict(Counter)
        self.checks: Counter[str] = Counter()

    def add(self, adapter: str, route: str, status: int) -> None:
        self.statuses[(adapter, route)][status] += 1

    def table(self) -> str:
        lines = [f"{'adapter':<11} {'route':<26} {'requests':>8}  statuses"]
        for (adapter, route), counts in sorted(self.statuses.items()):
            shown = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
            lines.append(f"{adapter:<11} {route:<26} {sum(counts.values()):>8}  {shown}")
        total = sum(sum(c.values()) for c in self.statuses.values())
        errors = sum(n for c in self.statuses.values() for s, n in c.items() if s >= 500)
        lines.append(
            f"total {total} requests, {errors} 5xx; "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.checks.items()))
        )
        return "\n".join(lines)


def leaked(text: str, secrets: set[str], allowed: str | None = None) -> list[str]:
    """The secrets found in ``text`` (``allowed``, a token handed to its caller, aside)."""
    return [s for s in secrets if s and s != allowed and s in text]


def placeholders(value: Any, made: dict[str, str | None]) -> Any:
    """A body value with a placeholder ("<user>") replaced by that credential."""
    if isinstance(value, str) and value in PLACEHOLDERS:
        return made.get(value[1:-1]) or ""
    return value


@dataclass(frozen=True)
class Built:
    """A request ready to send: its target (path and query) under ``prefix``, headers, body."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    pairs: list[tuple[str, Any]]

    def without_duplicates(self, request: Request) -> Built:
        """The same request with each parameter's first value only."""
        body = _body(request, deduplicated(self.pairs))[0] if self.pairs else self.body
        path, _, _ = self.target.partition("?")
        query = urllib.parse.urlencode(deduplicated(request.query))
        return Built(self.method, f"{path}?{query}", self.headers, body, deduplicated(self.pairs))


def _body(request: Request, pairs: list[tuple[str, Any]]) -> tuple[bytes, str]:
    if request.route.body == "oauth" and request.form:
        return form_text(pairs).encode(), "application/x-www-form-urlencoded"
    return json_text(pairs).encode(), "application/json"


def build(request: Request, made: dict[str, str | None], prefix: str) -> Built:
    """``request`` with its credential and placeholders filled in, under ``prefix`` (the
    hub's ``/hub/api/token-cache`` or a replica's ``/services/<name>``)."""
    route = request.route
    path = route.path.format(name=urllib.parse.quote(request.name, safe=""))
    pairs = [(k, placeholders(v, made)) for k, v in request.pairs]
    body, content_type = _body(request, pairs)
    if request.garbage_body is not None:
        body = request.garbage_body
    if route.method != "POST":
        body = b""
    token = made.get(request.credential)
    if request.credential == "raw":
        authorization: bytes | None = request.raw_authorization
    else:
        authorization = f"token {token}".encode() if token else None
    headers = [
        (b"Content-Type", content_type.encode()),
        *((k.encode(), v) for k, v in request.headers.items()),
    ]
    if authorization is not None:
        headers.append((b"Authorization", authorization))
    target = f"{prefix}/{path}".rstrip("/") + "?" + urllib.parse.urlencode(request.query)
    return Built(route.method, target, headers, body, pairs)


def widened(first: Any, alone: Any) -> bool:
    """Whether a token answered to a request with a duplicate (``first``) holds a scope the
    answer to the same request without it (``alone``) does not, or was given where that
    request was refused."""
    if not isinstance(first, dict) or "scopes" not in first:
        return False
    if not isinstance(alone, dict) or "scopes" not in alone:
        return True
    return not set(first["scopes"]) <= set(alone["scopes"])
