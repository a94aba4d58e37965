"""The identity provider's token endpoint: refresh (RFC 6749, RFC 8707), exchange (RFC 8693),
Globus dependent tokens, and revocation (RFC 7009). No Tornado here.

Every call is authenticated as the hub's client. Network trouble, a timeout, a 5xx or an
answer that is not a token is :class:`~.verify.ProviderUnavailable` (the caller gets 503);
the provider's own refusal is :class:`GrantRefused`, naming its RFC 6749 error code
(``invalid_grant``: the refresh token is spent, expired or revoked, and the upstream
session is over). Neither ever holds a token: descriptions are the provider's, dropped
when they look like one.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .verify import ProviderUnavailable

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEPENDENT = "urn:globus:auth:grant_type:dependent_token"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a type name
#: A run this long of token characters in a provider's description is not repeated.
_SECRET_LIKE = re.compile(r"[A-Za-z0-9+/_=.-]{20,}")


@dataclass(frozen=True)
class Grant:
    """A token the provider handed out, with what came with it (``response``: its whole answer)."""

    access_token: str
    token_type: str
    expires_in: float | None
    refresh_token: str | None
    scope: str | None
    response: dict[str, Any]

    def __repr__(self) -> str:  # never print a secret
        return f"Grant(expires_in={self.expires_in}, rotated={self.refresh_token is not None})"


class GrantRefused(Exception):
    """The provider refused a grant: ``error`` is its RFC 6749 code, ``description`` its words."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description


def grant_of(answer: Any, what: str) -> Grant:
    """The token in a provider's answer to ``what``; :class:`ProviderUnavailable` if none."""
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise ProviderUnavailable(f"The identity provider's answer to {what} holds no token")
    expires_in = answer.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():  # some providers send text
        expires_in = int(expires_in)
    refresh, scope, kind = (answer.get(k) for k in ("refresh_token", "scope", "token_type"))
    return Grant(
        access_token=token,
        token_type=kind if isinstance(kind, str) and kind else "Bearer",
        expires_in=float(expires_in)
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool)
        else None,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=scope if isinstance(scope, str) else None,
        response=answer,
    )


def _error_of(response: httpx.Response) -> str | None:
    """The RFC 6749 ``error`` of a provider's JSON refusal, if it is one."""
    try:
        answer = response.json()
    except (ValueError, RecursionError):
        return None
    error = answer.get("error") if isinstance(answer, dict) else None
    return error if isinstance(error, str) else None


def _described(value: Any) -> str:
    if not isinstance(value, str) or not value.isprintable() or _SECRET_LIKE.search(value):
        return ""
    return value[:200]


class TokenEndpoint:
    """The provider's token and revocation endpoints, called as the hub's client.

    ``endpoint(name)`` resolves "token_endpoint" and "revocation_endpoint" (a setting, the
    discovery document, or the authenticator's; "" when there is none). ``counts`` gets
    ``provider_calls`` and ``provider_errors``, by kind too.
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        endpoint: Callable[[str], Awaitable[str]],
        client_id: str,
        client_secret: str,
        counts: Counter[str],
        log: logging.Logger | None = None,
    ) -> None:
        self.http = http
        self.endpoint = endpoint
        self.client = (client_id, client_secret)
        self.counts = counts
        self.log = log or logging.getLogger(__name__)

    async def refresh(
        self, refresh_token: str, *, resource: str | None = None, scopes: tuple[str, ...] = ()
    ) -> Grant:
        """The refresh-token grant; with ``resource``, a token for that resource (RFC 8707)."""
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if resource:
            data["resource"] = resource
        if scopes:
            data["scope"] = " ".join(scopes)
        return grant_of(await self._token(data, "refresh"), "a refresh")

    async def exchange(
        self,
        subject_token: str,
        *,
        audience: str | None = None,
        resource: str | None = None,
        scopes: tuple[str, ...] = (),
    ) -> Grant:
        """RFC 8693 token exchange: the user's access token for a token of ``audience``."""
        data = {
            "grant_type": EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN,
            "requested_token_type": ACCESS_TOKEN,
        }
        for name, value in (("audience", audience), ("resource", resource)):
            if value:
                data[name] = value
        if scopes:
            data["scope"] = " ".join(scopes)
        return grant_of(await self._token(data, "exchange"), "a token exchange")

    async def dependent(self, token: str, resource_server: str) -> Grant:
        """Globus Auth's dependent token grant: the token it gives for ``resource_server``."""
        answer = await self._token({"grant_type": DEPENDENT, "token": token}, "dependent")
        tokens = answer.get("other_tokens", []) if isinstance(answer, dict) else answer
        for found in tokens if isinstance(tokens, list) else []:
            if isinstance(found, dict) and found.get("resource_server") == resource_server:
                return grant_of(found, "a dependent token grant")
        raise GrantRefused("invalid_target", f"no dependent token for {resource_server}")

    async def _url(self, name: str) -> str:
        """The endpoint ``name``; finding it may ask the provider (its discovery document)."""
        try:
            return await self.endpoint(name)
        except httpx.HTTPError as e:
            self.counts["provider_errors"] += 1
            raise ProviderUnavailable(
                f"The identity provider could not be reached ({type(e).__name__})"
            ) from None

    async def revoke(self, token: str, hint: str) -> bool:
        """RFC 7009: revoke ``token``; False when the provider has no revocation endpoint."""
        url = await self._url("revocation_endpoint")
        if not url:
            return False
        self.counts["provider_calls"] += 1
        self.counts["revocations"] += 1
        response = await self.http.post(
            url, data={"token": token, "token_type_hint": hint}, auth=self.client
        )
        if response.status_code == 400 and _error_of(response) == "unsupported_token_type":
            return False  # RFC 7009 2.2.1: a kind it cannot revoke (a JWT, often): it expires
        if response.status_code != 200:
            self.counts["provider_errors"] += 1
            raise ProviderUnavailable(f"The identity provider answered {response.status_code}")
        return True

    async def _token(self, data: dict[str, str], kind: str) -> Any:
        url = await self._url("token_endpoint")
        if not url:
            raise ProviderUnavailable("The identity provider's token endpoint is not known")
        self.counts["provider_calls"] += 1
        self.counts[f"{kind}_calls"] += 1
        try:
            response = await self.http.post(
                url, data=data, auth=self.client, headers={"Accept": "application/json"}
            )
        except httpx.HTTPError as e:
            self.counts["provider_errors"] += 1
            raise ProviderUnavailable(
                f"The identity provider could not be reached ({type(e).__name__})"
            ) from None
        try:
            answer = response.json()
        except (ValueError, RecursionError):
            answer = None
        if response.status_code in (400, 401) and isinstance(answer, dict):
            error = answer.get("error")
            if isinstance(error, str) and error.isprintable() and len(error) < 100:
                raise GrantRefused(error, _described(answer.get("error_description")))
        if response.status_code != 200 or answer is None:
            self.counts["provider_errors"] += 1
            raise ProviderUnavailable(f"The identity provider answered {response.status_code}")
        return answer
