"""Asking the identity provider about one upstream token: introspection, userinfo or JWKS.

Each verifier turns a token into a claims dict with ``"active": True``, or
``{"active": False, "reason": ...}``; network trouble is left to raise
(:class:`httpx.HTTPError`), which :class:`~jupyter_token_cache.cache.answers.CachedAnswers`
turns into a refusal with 503 and does not cache. Reasons name a check, never a token.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

from ..cache.answers import Unavailable
from .settings import TokenExchange


def inactive(reason: str) -> dict[str, Any]:
    return {"active": False, "reason": reason}


class ProviderUnavailable(Unavailable):
    """The identity provider could not be asked; the exchange fails closed (503)."""


def json_of(response: httpx.Response, what: str) -> Any:
    """The JSON of a 200 answer; anything else means the provider cannot be relied on now."""
    if response.status_code != 200:
        raise ProviderUnavailable(
            f"The identity provider answered {response.status_code} to {what}"
        )
    try:
        return response.json()
    except ValueError:
        raise ProviderUnavailable(f"The identity provider's answer to {what} is not JSON") from None


class Provider:
    """The provider's endpoints (from its discovery document, fetched once) and one HTTP client."""

    def __init__(self, settings: TokenExchange, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self._discovery: dict[str, Any] | None = None

    async def endpoint(self, name: str, timeout: float) -> str:
        """The URL of ``name`` ("introspection_endpoint", "jwks_uri", ...): a setting or discovered."""
        configured: str = getattr(self.settings, name)
        if configured:
            return configured
        if self._discovery is None:
            url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            response = await self.http.get(url, timeout=timeout)
            document = json_of(response, "a request for its discovery document")
            if not isinstance(document, dict) or document.get("issuer") != self.settings.issuer:
                raise ProviderUnavailable(
                    "The identity provider's discovery document names another issuer"
                )
            self._discovery = document
        found = self._discovery.get(name)
        if not isinstance(found, str) or not found:
            raise ProviderUnavailable(f"The identity provider publishes no {name}")
        return found


class Introspection:
    """RFC 7662 at the provider, authenticated as ``client_id`` (HTTP Basic)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def __call__(self, token: str, timeout: float) -> dict[str, Any]:
        settings = self.provider.settings
        url = await self.provider.endpoint("introspection_endpoint", timeout)
        response = await self.provider.http.post(
            url,
            data={"token": token, "token_type_hint": "access_token"},
            auth=(settings.client_id, settings.client_secret),
            headers={"Accept": "application/json"},
            timeout=timeout,
        )
        if response.status_code == 400:  # e.g. unsupported_token_type: said of this token
            return inactive("The identity provider cannot introspect the token")
        # 401: our own client credentials are wrong; any other: the provider is not well
        answer = json_of(response, "an introspection")
        if not isinstance(answer, dict) or answer.get("active") is not True:
            return inactive("The identity provider says the token is not active")
        if answer.get("iss", settings.issuer) != settings.issuer:
            return inactive("The token was issued by another provider")
        if isinstance(answer.get("exp"), (int, float)) and answer["exp"] <= time.time():
            return inactive("The token has expired")
        return answer


class Userinfo:
    """The OIDC userinfo endpoint: the token is good if the provider answers with a user."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def __call__(self, token: str, timeout: float) -> dict[str, Any]:
        url = await self.provider.endpoint("userinfo_endpoint", timeout)
        response = await self.provider.http.get(
            url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        if response.status_code in (400, 401, 403):
            return inactive("The identity provider refused the token at its userinfo endpoint")
        claims = json_of(response, "a userinfo request")
        if not isinstance(claims, dict) or not claims.get("sub"):
            return inactive("The identity provider's userinfo names no subject")
        return {**claims, "active": True}


#: Why PyJWT refused a token, in words for the caller (the first match wins).
JWT_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "The token has expired"),
    (jwt.InvalidAudienceError, "The token is meant for another audience"),
    (jwt.InvalidIssuerError, "The token was issued by another provider"),
    (jwt.ImmatureSignatureError, "The token is not valid yet"),
    (jwt.InvalidSignatureError, "The token's signature does not verify"),
    (jwt.InvalidTokenError, "The token is malformed or misses a required claim"),
)


class JWKS:
    """A JWT access token checked here against the provider's published keys.

    Notes
    -----
    Keys are fetched from ``jwks_uri`` on first use and again when a token names a key
    id not among them (the provider rotated its keys), at most once per
    ``jwks_refresh_interval``, so forged key ids cannot make the hub hammer the
    provider. Only ``algorithms`` (asymmetric ones) are accepted, whatever the token's
    header says: ``alg=none`` and an HMAC keyed with the public key are refused by
    PyJWT's allow-list. ``iss``, ``aud``, ``exp`` and ``nbf`` are required and checked.
    """

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self, token: str, timeout: float) -> dict[str, Any]:
        settings = self.provider.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return inactive("The token is not a JWT")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in settings.algorithms:
            return inactive("The token is signed with an algorithm that is not accepted")
        key = await self._key(kid if isinstance(kid, str) else None, timeout)
        if key is None:
            return inactive("The token is signed with a key the identity provider does not publish")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=list(settings.algorithms),
                audience=list(settings.allowed_audiences),
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as e:
            return inactive(next(why for kind, why in JWT_REFUSALS if isinstance(e, kind)))
        return {**claims, "active": True}

    async def _key(self, kid: str | None, timeout: float) -> jwt.PyJWK | None:
        if self._fetched and kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        async with self._lock:
            interval = self.provider.settings.jwks_refresh_interval
            if not self._fetched or time.monotonic() - self._fetched >= interval:
                await self._fetch(timeout)
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _fetch(self, timeout: float) -> None:
        url = await self.provider.endpoint("jwks_uri", timeout)
        document = json_of(await self.provider.http.get(url, timeout=timeout), "a keys request")
        try:
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (ValueError, TypeError, AttributeError, jwt.PyJWKSetError):
            raise ProviderUnavailable("The identity provider publishes no usable keys") from None
        self._keys = {k.key_id: k for k in keys if k.key_id and (k.public_key_use in (None, "sig"))}
        self._fetched = time.monotonic()


VERIFIERS: dict[str, type[Introspection | Userinfo | JWKS]] = {
    "introspection": Introspection,
    "userinfo": Userinfo,
    "jwt": JWKS,
}
