"""What the upstream-token service works on: the auth state's keeper, its answers, its errors.

No Tornado, no I/O: :mod:`.service` holds the rules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from ..times import iso8601
from ..tokens.models import LifetimeUnavailable, TokenRequestError, UnknownService, shown
from .auth_state import Held
from .grants import GrantRefused
from .targets import Target


class LoginRequired(TokenRequestError):
    """The user's upstream session is over (or never was): they must log in again (401)."""

    status = 401
    error = "login_required"


class ProviderDown(TokenRequestError):
    """The identity provider cannot be asked now (503, ``temporarily_unavailable``)."""

    status = 503
    error = "temporarily_unavailable"


class ProviderRefused(TokenRequestError):
    """The provider refused a target's token for a reason of its own (502), e.g. invalid_target."""

    status = 502


class SessionChanged(Exception):
    """The auth state names another session than the request was keyed with: ask again."""


class AuthStates(Protocol):
    """The authenticator's auth state of a user (``user`` is the adapter's handle of one)."""

    def name(self, user: Any) -> str:
        """The user's name."""

    async def session(self, user: Any) -> str | None:
        """:func:`~.auth_state.session_of` the user's auth state, cheaply (may be remembered)."""

    async def load(self, user: Any) -> dict[str, Any] | None:
        """The user's auth state, read from where it is kept (not from a memory of it)."""

    async def save(self, user: Any, state: dict[str, Any]) -> None:
        """Keep ``state`` as the user's auth state, durably, before this returns."""


class Entry(NamedTuple):
    """What the cache holds for an upstream token (a JSON list on a shared backend)."""

    token: str
    token_type: str
    expires_at: float | None
    created: float
    scope: str


@dataclass(frozen=True)
class UpstreamToken:
    """An upstream token handed to a caller."""

    access_token: str
    token_type: str
    expires_at: float | None
    scope: str
    target: str | None
    cached: bool

    def model(self) -> dict[str, Any]:
        """The JSON answer of ``POST /upstream`` (``expires_at``/``expires_in`` null: no expiry known)."""
        left = None if self.expires_at is None else max(0, int(self.expires_at - time.time()))
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_at": iso8601(self.expires_at),
            "expires_in": left,
            "scope": self.scope,
            "target": self.target,
            "cached": self.cached,
        }

    def __repr__(self) -> str:  # never print the secret
        return f"UpstreamToken(target={self.target!r}, expires_at={self.expires_at})"


def login_again(
    why: str = "there is no login at the identity provider to take it from",
) -> LoginRequired:
    return LoginRequired(f"No upstream token: {why}; log in to the hub again")


def no_token(server: str | None) -> TokenRequestError:
    if server is None:
        return login_again()
    return UnknownService(f"The login holds no token for resource server {shown(server)}")


def unrefreshable(held: Held, now: float, need: int) -> TokenRequestError:
    left = int((held.expires_at or now) - now)
    if left <= 0:
        return login_again("the login's token has expired and the provider gave no refresh token")
    return LifetimeUnavailable(
        f"The login's token has {left} s left, less than the {need} s asked for, and cannot "
        "be refreshed (the provider gave no refresh token): ask for less, or log in again"
    )


def too_short(lifetime: float, need: int) -> LifetimeUnavailable:
    return LifetimeUnavailable(
        f"The identity provider's tokens live {int(lifetime)} s, less than the {need} s asked for"
    )


def refused(error: GrantRefused, target: Target | None) -> ProviderRefused:
    what = f"target {shown(target.name)}" if target is not None else "a refresh"
    described = f" ({error.description})" if error.description else ""
    return ProviderRefused(f"The identity provider refused {what}: {error.error}{described}")
