"""What the token policy works on: the parent session, the token it hands out, its errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class ParentSession:
    """The credential a request came with, as the policy sees it.

    Notes
    -----
    ``ref`` is an opaque, already HMAC-derived identifier of the session (a login
    session, a server's API token, a user's API/OAuth token); it is what ties a child
    token to its session in cache keys and in the note of the token row, so no raw
    session id or token id needs to be stored anywhere. A token minted by the cache and
    used as a credential resolves to its *original* session (``minted`` says which kind
    it was): chains keep the original expiry, and ``scopes`` are the credential's own,
    so a chain never widens anything.
    """

    #: Name of the user who owns the session.
    user: str
    #: HMAC-derived identifier of the session.
    ref: str
    #: "login" (cookie), "server" (a spawned server's token) or "token" (API/OAuth).
    kind: str
    #: Epoch seconds at which the session ends; None when it does not expire.
    expires_at: float | None
    #: Expanded scopes the session grants: the user's for login and server sessions,
    #: the token's own (within its owner's) otherwise.
    scopes: frozenset[str]
    #: JupyterHub login session id, copied onto children so that logging out revokes them.
    session_id: str | None = None
    #: Name of the server (spawner) whose session this is, for server sessions.
    server: str | None = None
    #: "notebook" or "internal" when the credential itself was minted by the cache.
    minted: str | None = None


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
        """The JSON body of a REST answer."""
        body: dict[str, Any] = {
            "token": self.token,
            "id": self.id,
            "expires_at": self.expires_at,
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


class LifetimeUnavailable(TokenRequestError):
    """Even a fresh token could not live as long as required: its parent ends sooner (422)."""

    status = 422
