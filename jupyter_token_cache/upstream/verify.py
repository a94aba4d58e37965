"""Asking the identity provider about one upstream token: introspection, userinfo or JWKS.

Each verifier turns a token into a claims dict with ``"active": True``, or
``{"active": False, "reason": ...}``; network trouble is left to raise
(:class:`httpx.HTTPError`), which :class:`~jupyter_token_cache.cache.answers.CachedAnswers`
turns into a refusal with 503 and does not cache. Reasons name a check, never a token.

Notes
-----
The answer cached for an inactive token is the same whatever the reason (the caller is
told "not active"), so the reason is logged at debug level where it is found, for an
operator telling an audience mismatch from an expired token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Generic, TypeVar

import httpx
import jwt

from ..cache.answers import Unavailable
from .settings import TokenExchange
from .targets import UpstreamTokens

#: The JWK key type, and the curves, each JWS algorithm verifies with (RFC 7518, RFC 8037).
KEY_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    **{alg: ("RSA", ()) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", ("P-256",)),
    "ES384": ("EC", ("P-384",)),
    "ES512": ("EC", ("P-521",)),
    "EdDSA": ("OKP", ("Ed25519", "Ed448")),
}


def fits(jwk: dict[str, Any], alg: str) -> bool:
    """Whether the published key ``jwk`` can verify a signature made with ``alg``.

    Its type (and curve) must be the algorithm's, and its own ``alg``, when it names one,
    the same: a token's header never chooses how a key is used.
    """
    kty, curves = KEY_TYPES.get(alg, ("", ()))
    return (
        jwk.get("alg", alg) == alg
        and jwk.get("kty") == kty
        and (not curves or jwk.get("crv") in curves)
    )


#: The settings a provider is asked with: the exchange's, or the upstream tokens'.
S = TypeVar("S", TokenExchange, UpstreamTokens)


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
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser
        raise ProviderUnavailable(f"The identity provider's answer to {what} is not JSON") from None


class Provider(Generic[S]):
    """The provider's endpoints (from its discovery document, fetched once) and one HTTP client."""

    def __init__(
        self,
        settings: S,
        http: httpx.AsyncClient,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings: S = settings
        self.http = http
        self.log = log or logging.getLogger(__name__)
        self._discovery: dict[str, Any] | None = None

    def inactive(self, reason: str) -> dict[str, Any]:
        """The answer for a token that is not good, its reason logged (see the module's notes)."""
        self.log.debug("Token exchange: the subject token is not active: %s", reason)
        return {"active": False, "reason": reason}

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

    def __init__(self, provider: Provider[TokenExchange]) -> None:
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
            return self.provider.inactive("The identity provider cannot introspect the token")
        # 401: our own client credentials are wrong; any other: the provider is not well
        answer = json_of(response, "an introspection")
        if not isinstance(answer, dict) or answer.get("active") is not True:
            return self.provider.inactive("The identity provider says the token is not active")
        if answer.get("iss", settings.issuer) != settings.issuer:
            return self.provider.inactive("The token was issued by another provider")
        if isinstance(answer.get("exp"), (int, float)) and answer["exp"] <= time.time():
            return self.provider.inactive("The token has expired")
        return answer


class Userinfo:
    """The OIDC userinfo endpoint: the token is good if the provider answers with a user."""

    def __init__(self, provider: Provider[TokenExchange]) -> None:
        self.provider = provider

    async def __call__(self, token: str, timeout: float) -> dict[str, Any]:
        url = await self.provider.endpoint("userinfo_endpoint", timeout)
        response = await self.provider.http.get(
            url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        if response.status_code in (400, 401, 403):
            return self.provider.inactive(
                "The identity provider refused the token at its userinfo endpoint"
            )
        claims = json_of(response, "a userinfo request")
        if not isinstance(claims, dict) or not claims.get("sub"):
            return self.provider.inactive("The identity provider's userinfo names no subject")
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

    The key is chosen by the provider's key set, never by the token: a ``kid`` naming a
    published key selects that key, which must :func:`fit <fits>` the header's ``alg``
    (an ``ES256`` header with the ``kid`` of an RSA key is a bad token, not an error);
    without a ``kid``, or with one the set does not name, the one key without a kid
    that fits is used (RFC 7517 makes ``kid`` optional), or, without a ``kid``, the one
    key of the set that fits. ``jku``, ``x5u``, ``jwk`` and ``x5c`` headers are never
    followed. PyJWT gets the key as a :class:`jwt.PyJWK` bound to that algorithm, so
    it checks the pairing again.
    """

    def __init__(self, provider: Provider[TokenExchange]) -> None:
        self.provider = provider
        #: The published signing keys (JWKs), as the provider wrote them.
        self._keys: list[dict[str, Any]] = []
        #: Keys made ready for PyJWT, by (position in _keys, algorithm).
        self._prepared: dict[tuple[int, str], jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def __call__(self, token: str, timeout: float) -> dict[str, Any]:
        settings = self.provider.settings
        inactive = self.provider.inactive
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            return inactive("The token is not a JWT")
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in settings.algorithms:
            return inactive("The token is signed with an algorithm that is not accepted")
        if kid is not None and not isinstance(kid, str):
            return inactive("The token's key id is not a string")
        key = await self._key(alg, kid, timeout)
        if key is None:
            return inactive(
                f"The token is signed with a key the identity provider does not publish for {alg}"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=list(settings.allowed_audiences),
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as e:
            return inactive(next(why for kind, why in JWT_REFUSALS if isinstance(e, kind)))
        except (jwt.PyJWTError, ValueError, TypeError):  # a key or signature PyJWT cannot use
            return inactive("The token's signature cannot be checked with the published key")
        return {**claims, "active": True}

    async def _key(self, alg: str, kid: str | None, timeout: float) -> jwt.PyJWK | None:
        """The published key for a token signed with ``alg`` naming ``kid``; None if none."""
        if self._fetched:
            found = self._pick(alg, kid)
            if found is not None:
                return found
        async with self._lock:
            interval = self.provider.settings.jwks_refresh_interval
            if not self._fetched or time.monotonic() - self._fetched >= interval:
                await self._fetch(timeout)
        return self._pick(alg, kid)

    def _pick(self, alg: str, kid: str | None) -> jwt.PyJWK | None:
        """The one key that fits (see the class notes), made ready for PyJWT."""
        named = [i for i, k in enumerate(self._keys) if kid is not None and k.get("kid") == kid]
        if named:
            chosen = [i for i in named if fits(self._keys[i], alg)][:1]
        else:
            fitting = [i for i, k in enumerate(self._keys) if fits(k, alg)]
            chosen = [i for i in fitting if "kid" not in self._keys[i]]
            if kid is None and len(chosen) != 1:
                chosen = fitting
        if len(chosen) != 1:
            return None
        index = chosen[0]
        if (index, alg) not in self._prepared:
            try:
                self._prepared[(index, alg)] = jwt.PyJWK(self._keys[index], algorithm=alg)
            except (jwt.PyJWTError, ValueError, TypeError):  # published, but not a usable key
                return None
        return self._prepared[(index, alg)]

    async def _fetch(self, timeout: float) -> None:
        url = await self.provider.endpoint("jwks_uri", timeout)
        document = json_of(await self.provider.http.get(url, timeout=timeout), "a keys request")
        keys = document.get("keys") if isinstance(document, dict) else None
        usable = [
            key
            for key in (keys if isinstance(keys, list) else [])
            if isinstance(key, dict)
            and key.get("kty") in ("RSA", "EC", "OKP")
            and key.get("use") in (None, "sig")
            and isinstance(key.get("kid", ""), str)
        ]
        if not usable:
            raise ProviderUnavailable("The identity provider publishes no usable keys")
        self._keys, self._prepared = usable, {}
        self._fetched = time.monotonic()


VERIFIERS: dict[str, type[Introspection | Userinfo | JWKS]] = {
    "introspection": Introspection,
    "userinfo": Userinfo,
    "jwt": JWKS,
}
