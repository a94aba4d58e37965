"""What the token policy works on: the parent session, the token it hands out, its errors."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from ..times import iso8601

#: A run this long of letters and digits may be a secret (JupyterHub tokens are 32 hex).
_SECRET_LIKE = re.compile(r"[A-Za-z0-9+/_=-]{20,}")


def shown(value: str) -> str:
    """``value`` quoted for an error message, unless it could be a secret.

    Error messages are shown to the caller and logged by the hub; they name what was
    wrong, but input that looks like a token (a long run of letters and digits, as when
    a token is pasted into the wrong field) is never echoed.
    """
    if len(value) > 100 or _SECRET_LIKE.search(value):
        return "(a value not shown)"
    return repr(value)


def printable(value: str) -> bool:
    """Whether ``value`` is printable ASCII (spaces allowed): what a header value may hold.

    Control characters (CR, LF, NUL, ESC, DEL) and non-ASCII text in a header value are
    refused by HTTP client libraries with errors that echo the value, or split a header
    in two; a value that fails this never reaches one.
    """
    return value.isascii() and value.isprintable()


@dataclass(frozen=True, slots=True)
class TokenRef:
    """One token row, named exactly: its REST id and a fingerprint of its hash.

    Notes
    -----
    Databases hand a deleted row's id to the next row (SQLite does it at once, any
    database after a restore), so an id alone does not say "the same token". The
    fingerprint is derived from the row's salted hash, which no other row can share;
    together they name the very row. The fingerprint is not usable as a token and is
    never put in an event or a log line.
    """

    #: JupyterHub's REST id of the token ("a123").
    id: str
    #: Fingerprint of the row's hash (see the hub adapter's ``fingerprint``).
    fp: str


@dataclass(frozen=True, slots=True)
class ParentSession:
    """The session a request acts for, as the policy sees it.

    Notes
    -----
    ``ref`` names the session in cache keys and lineage: ``login:<session id>`` for a
    login cookie, ``<kind>:<row id>:<fingerprint>`` for a server's or a user's token
    row, so a new token that inherits a freed id is another session. A token minted by
    the cache and used as a credential resolves to its *original* session (``minted``
    says which kind it was; ``via`` is the credential's own row): chains keep the
    original expiry, and ``scopes`` are the credential's own, so a chain never widens
    anything.
    """

    #: Name of the user who owns the session.
    user: str
    #: Identifier of the session in cache keys and lineage.
    ref: str
    #: "login" (cookie), "server" (a spawned server's token), "token" (API/OAuth) or
    #: "upstream" (an identity provider's token, exchanged).
    kind: str
    #: Epoch seconds at which the session ends; None when it does not expire.
    expires_at: float | None
    #: Expanded scopes the session grants the request.
    scopes: frozenset[str]
    #: JupyterHub login session id, copied onto children so that logging out revokes them.
    session_id: str | None = None
    #: Name of the server (spawner) whose session this is, for server sessions.
    server: str | None = None
    #: "notebook" or "internal" when the credential itself was minted by the cache.
    minted: str | None = None
    #: The session's own token row (a server's token, a user's API/OAuth token); None
    #: for a login session, which has no row.
    root: TokenRef | None = None
    #: The credential's row when it is not the root (a minted token used as credential).
    via: TokenRef | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token handed to a caller, and whether it came from the cache."""

    token: str
    id: str
    expires_at: float
    scopes: tuple[str, ...]
    cached: bool
    service: str | None = None

    def model(self) -> dict[str, Any]:
        """The JSON body of a REST answer.

        ``expires_at`` is written as JupyterHub writes its token model's times (ISO 8601
        UTC), and ``expires_in`` counts whole seconds left, as OAuth answers do.
        """
        body: dict[str, Any] = {
            "token": self.token,
            "id": self.id,
            "expires_at": iso8601(self.expires_at),
            "expires_in": max(0, int(self.expires_at - time.time())),
            "scopes": list(self.scopes),
            "cached": self.cached,
        }
        if self.service is not None:
            body["service"] = self.service
        return body

    def __repr__(self) -> str:  # never print the secret
        return f"IssuedToken(id={self.id!r}, expires_at={self.expires_at}, cached={self.cached})"


class TokenRequestError(Exception):
    """A request the policy refuses; ``status`` is the HTTP status that says why.

    Messages are shown to the caller and logged: they name scopes, services and
    lifetimes, never a token.
    """

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(TokenRequestError):
    """Malformed input: wrong types, unknown fields, unknown scopes (400)."""

    status = 400


class Forbidden(TokenRequestError):
    """Scopes outside policy or outside the caller's, or a credential that may not ask (403)."""

    status = 403


class UnknownService(TokenRequestError):
    """No internal-token policy for the named service (404)."""

    status = 404


class SessionEnded(Forbidden):
    """The session a credential was minted for has ended (403); its tokens are revoked."""


class LifetimeUnavailable(TokenRequestError):
    """Even a fresh token could not live as long as required: its parent ends sooner (422)."""

    status = 422
