"""The user's upstream tokens in the authenticator's auth state: reading, stamping, refreshing, ending.

Pure functions on the auth state dict, no I/O. The layouts read are oauthenticator's:
``access_token``, ``refresh_token``, ``id_token``, ``token_response`` (its
``build_auth_state_dict``), and GlobusOAuthenticator's per-resource-server ``tokens``.

Notes
-----
oauthenticator keeps each token's ``expires_in`` as the provider said it, relative to a
moment it does not record, and the upstream session (one login at the provider, with its
refreshes) has no name of its own. Both are kept under :data:`STAMP`, a key of this
package's in the same auth state: a random session name given at login and kept across
refreshes, and each token's expiry, worked out when the token is first seen and tied to
it by a fingerprint, so a token stamped late (an auth state saved before this package
was installed) is not given a fresh lifetime. Ending a session keeps its name and drops
every token, so the next request is asked to log in again.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import jwt

#: This package's key in the auth state.
STAMP = "token_cache"
#: ``session_of`` for an auth state with tokens but no session name yet.
UNSTAMPED = "unstamped"
#: The login token's place in the stamp's expiries (resource servers use their name).
LOGIN = ""
#: Keys holding secrets, dropped when the session ends.
SECRET_KEYS = ("access_token", "refresh_token", "id_token", "token_response", "tokens")


@dataclass(frozen=True, slots=True)
class Held:
    """A token the auth state holds: the login's, or a resource server's."""

    access_token: str
    refresh_token: str | None
    #: Epoch seconds; None when nobody knows (no expires_in, not a JWT).
    expires_at: float | None
    #: When it was handed out (epoch seconds), when that is known.
    issued_at: float | None
    #: Space-separated, as OAuth writes scopes.
    scope: str
    token_type: str

    def __repr__(self) -> str:  # never print a secret
        return f"Held(expires_at={self.expires_at}, refreshable={self.refresh_token is not None})"


def fingerprint(token: str) -> str:
    """What the stamp ties an expiry to: a digest prefix, not usable as the token."""
    return hashlib.sha256(b"jupyter-token-cache held\0" + token.encode()).hexdigest()[:16]


def _matches(stamped: Any, token: str) -> bool:
    """Whether a stamp's ``[fingerprint, expires_at, issued_at]`` is ``token``'s."""
    return (
        isinstance(stamped, list)
        and len(stamped) == 3
        and stamped[0] == fingerprint(token)
        and all(isinstance(t, int | float) for t in stamped[1:])
    )


def ended_by(state: Any) -> str | None:
    """Why the session of ``state`` ended here (its stamp says so); None if it did not."""
    reason = _stamp(state).get("ended") if isinstance(state, dict) else None
    return reason if isinstance(reason, str) else None


def _stamp(state: dict[str, Any]) -> dict[str, Any]:
    stamp = state.get(STAMP)
    return stamp if isinstance(stamp, dict) else {}


def _entry(state: dict[str, Any], resource_server: str | None) -> dict[str, Any] | None:
    """Where a token lives: the auth state itself (the login's) or its ``tokens`` entry."""
    if resource_server is None:
        return state
    tokens = state.get("tokens")
    entry = tokens.get(resource_server) if isinstance(tokens, dict) else None
    return entry if isinstance(entry, dict) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _expires_in(state: dict[str, Any], resource_server: str | None) -> float | None:
    """The provider's ``expires_in`` for a token, as the auth state kept it."""
    if resource_server is None:
        response = state.get("token_response")
        value = response.get("expires_in") if isinstance(response, dict) else None
    else:
        value = (_entry(state, resource_server) or {}).get("expires_in")
    return _seconds(value)


def _seconds(value: Any) -> float | None:
    """A number of seconds (or epoch seconds) as JSON gave it; None for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _jwt_expiry(token: str) -> float | None:
    """A JWT's ``exp`` (read, not verified: it only says when to refresh); None otherwise."""
    if token.count(".") != 2:
        return None
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    return _seconds(exp)


def locations(state: dict[str, Any]) -> list[str | None]:
    """Where the auth state holds tokens: None (the login's) and each resource server."""
    found: list[str | None] = [None] if _text(state.get("access_token")) else []
    tokens = state.get("tokens")
    if isinstance(tokens, dict):
        found += [name for name in tokens if _text((_entry(state, name) or {}).get("access_token"))]
    return found


def session_of(state: Any) -> str | None:
    """The upstream session an auth state belongs to; None when it holds no token (never
    logged in this way, or ended), :data:`UNSTAMPED` when it has tokens but no name yet."""
    if not isinstance(state, dict) or ended_by(state) or not locations(state):
        return None
    session = _stamp(state).get("session")
    return session if isinstance(session, str) and session else UNSTAMPED


def held(state: dict[str, Any], resource_server: str | None = None) -> Held | None:
    """The login's token (or ``resource_server``'s), with its expiry as best known."""
    entry = _entry(state, resource_server)
    token = _text(entry.get("access_token")) if entry else None
    if entry is None or token is None:
        return None
    where = LOGIN if resource_server is None else resource_server
    stamped = _stamp(state).get("expires", {}).get(where)
    issued_at = None
    if _matches(stamped, token):
        expires_at: float | None = float(stamped[1])
        issued_at = float(stamped[2])
    else:
        # globus-sdk's own absolute expiry, else a JWT's
        expires_at = _seconds(entry.get("expires_at_seconds")) or _jwt_expiry(token)
    scope = entry.get("scope")
    if resource_server is None and not scope:
        response = state.get("token_response")
        scope = response.get("scope") if isinstance(response, dict) else None
    if isinstance(scope, list):
        scope = " ".join(s for s in scope if isinstance(s, str))
    response = state.get("token_response") if resource_server is None else entry
    token_type = response.get("token_type") if isinstance(response, dict) else None
    return Held(
        access_token=token,
        refresh_token=_text(entry.get("refresh_token")),
        expires_at=expires_at,
        issued_at=issued_at,
        scope=scope if isinstance(scope, str) else "",
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
    )


def stamped(
    state: dict[str, Any], *, now: float, previous: dict[str, Any] | None = None, new: bool = False
) -> dict[str, Any]:
    """``state`` with its stamp: the session name (``previous``'s, or a new one at a login,
    ``new``), and the expiry of each token it holds.

    A token the previous stamp knew keeps its expiry; a new one expires ``expires_in``
    after ``now`` (the moment its answer was read), or, without one, when its JWT says.
    """
    before = _stamp(previous if previous is not None else state)
    session = None if new else before.get("session")
    known = before.get("expires", {}) if isinstance(before.get("expires"), dict) else {}
    expires: dict[str, list[Any]] = {}
    for location in locations(state):
        where = LOGIN if location is None else location
        token = str((_entry(state, location) or {})["access_token"])
        fp = fingerprint(token)
        old: Any = known.get(where)
        if _matches(old, token):
            expires[where] = old
        elif (seconds := _expires_in(state, location)) is not None:
            expires[where] = [fp, now + seconds, now]
    return {
        **state,
        STAMP: {"session": session or secrets.token_hex(16), "expires": expires},
    }


def refreshed(
    state: dict[str, Any],
    response: dict[str, Any],
    *,
    now: float,
    resource_server: str | None = None,
    token: bool = True,
) -> dict[str, Any]:
    """``state`` after the provider answered a refresh grant with ``response``.

    The refresh token is replaced when the provider rotated it (else kept, as
    oauthenticator does). With ``token``, the answer's access token replaces the login's
    (or ``resource_server``'s); without it (a token for a resource indicator, RFC 8707, is
    the target's, not the login's), only the refresh token changes.
    """
    new = {**state}
    rotated = _text(response.get("refresh_token"))
    if resource_server is not None:
        tokens = dict(new.get("tokens") or {})
        entry = dict(tokens.get(resource_server) or {})
        entry["refresh_token"] = rotated or entry.get("refresh_token")
        if token:
            entry.update(
                access_token=response["access_token"],
                expires_in=response.get("expires_in"),
                scope=response.get("scope", entry.get("scope")),
            )
            entry.pop("expires_at_seconds", None)
        tokens[resource_server] = entry
        new["tokens"] = tokens
    elif token:
        answer = {**response, "refresh_token": rotated or state.get("refresh_token")}
        new.update(
            access_token=response["access_token"],
            refresh_token=answer["refresh_token"],
            token_response=answer,
        )
        if _text(response.get("id_token")):
            new["id_token"] = response["id_token"]
        if isinstance(response.get("scope"), str):
            new["scope"] = response["scope"].split(" ")
    elif rotated:
        new["refresh_token"] = rotated
        if isinstance(new.get("token_response"), dict):  # never keep a spent one anywhere
            new["token_response"] = {**new["token_response"], "refresh_token": rotated}
    return stamped(new, now=now, previous=state)


def ended(state: dict[str, Any], reason: str, *, now: float) -> dict[str, Any]:
    """``state`` with every token dropped: its session ended (``reason``); log in again."""
    stamp = _stamp(state)
    kept = {k: v for k, v in state.items() if k not in SECRET_KEYS and k != STAMP}
    return {**kept, STAMP: {"session": stamp.get("session"), "ended": reason, "ended_at": now}}


def revocable(state: dict[str, Any]) -> list[tuple[str, str]]:
    """The tokens of ``state`` to revoke when its session ends: (token, RFC 7009 hint),
    access tokens first (a refresh token revoked first may take its grant with it)."""
    access, refresh = [], []
    for location in locations(state):
        entry = _entry(state, location) or {}
        access.append((str(entry["access_token"]), "access_token"))
        if _text(entry.get("refresh_token")):
            refresh.append((str(entry["refresh_token"]), "refresh_token"))
    return access + refresh
