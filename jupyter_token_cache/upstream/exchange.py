"""Who an upstream token speaks for: verified once, cached, and turned into an identity.

Notes
-----
This is the provider half of the token exchange, without Tornado: the hub adapter
(:mod:`jupyter_token_cache.hub.exchange`) runs the authenticator's checks on the
identity and mints with the token policy. The rule for caching the provider's answers
is the project's one (:class:`~jupyter_token_cache.cache.answers.CachedAnswers`).

The upstream *session* is the parent of every hub token minted for it: the token's
``sid`` (its login session at the provider), else its ``jti``, else a digest of the
token. When the provider later calls a token inactive before its expiry, the session it
was seen with is reported as ended, so the hub revokes what was minted for it. Which
session a token was seen with is recorded where revocation can rely on it
(:class:`UpstreamSessions`: the hub's database), never in a cache — a cache may evict it
(a flood of garbage tokens fills a bounded one), may be switched off, and forgets
everything when a memory backend's hub restarts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ..cache.answers import CachedAnswers
from ..tokens.models import printable
from .settings import TokenExchange, UpstreamCache
from .verify import VERIFIERS, Provider, ProviderUnavailable

KIND = "upstream"


def digest(token: str) -> str:
    """The name under which a subject token's session is recorded (SHA-256, hex).

    Not an HMAC under a per-process key, as cache keys are: it must name the same token
    after a restart. Subject tokens are signed, high-entropy credentials of the
    provider, so their digest in the hub database reveals nothing usable.
    """
    return hashlib.sha256(b"jupyter-token-cache upstream\0" + token.encode()).hexdigest()


class UpstreamSessions(Protocol):
    """Where the hub records which upstream session each verified subject token belonged to."""

    def seen(self, name: str, session: str, username: str, expires_at: float | None) -> None:
        """The token ``name`` (a :func:`digest`) was active, for ``session`` and ``username``."""

    def ended(self, name: str) -> tuple[str, str, float | None] | None:
        """Forget the token ``name``; its (session, username, expiry) if it was recorded."""


class ExchangeError(Exception):
    """A refused exchange, in RFC 6749 section 5.2 terms (``error``, its description, status)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        #: The upstream session that ended and the user it was seen with (the claim, not
        #: yet normalised), when the refusal shows one has.
        self.ended_session: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified upstream token speaks for (before the authenticator's rules)."""

    #: The value of ``username_claim``, not yet normalised.
    username: str
    #: The value of ``groups_claim`` (None when the claim is not configured or absent).
    groups: tuple[str, ...] | None
    #: The upstream session's name (``upstream:<digest>``), the parent of hub tokens.
    session: str
    #: Epoch seconds at which the upstream token expires (None: unknown).
    expires_at: float | None
    #: Whether the provider's answer came from the cache.
    cached: bool


class UpstreamVerifier:
    """Verify upstream tokens with the configured provider, one call per token per TTL."""

    def __init__(
        self,
        *,
        settings: TokenExchange,
        cache: UpstreamCache,
        sessions: UpstreamSessions,
        log: logging.Logger | None = None,
        verify: Any = True,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.log = log or logging.getLogger(__name__)
        self.counts: Counter[str] = Counter()
        self._http = httpx.AsyncClient(timeout=settings.timeout, verify=verify)
        self.provider = Provider(settings, self._http, self.log)
        self.answers = CachedAnswers(
            cache=cache,
            kind=KIND,
            ask=VERIFIERS[settings.verification](self.provider),
            ttl=settings.introspection_ttl,
            negative_ttl=settings.negative_ttl,
            calls=asyncio.Semaphore(settings.max_concurrent_calls),
            timeout=settings.timeout,
            counts=self.counts,
            authority="the identity provider",
            prefix="provider",
            unavailable=ProviderUnavailable,
        )

    async def identify(self, token: str) -> Identity:
        """The identity ``token`` speaks for; :class:`ExchangeError` when it is not good.

        A token that cannot be one (empty, not printable ASCII, or holding a space: neither a
        bearer token of RFC 6750 nor a JWT) is refused before the provider is asked, so it
        never reaches a header of the provider's request nor counts as a provider error.
        """
        if not token or not printable(token) or " " in token:
            raise ExchangeError("invalid_grant", "The subject token is malformed")
        try:
            answer, asked = await self.answers.check(token)
        except ProviderUnavailable as e:
            self.log.warning("Token exchange refused: %s", e)
            raise ExchangeError("temporarily_unavailable", str(e), 503) from None
        self.counts["misses" if asked else "hits"] += 1
        if not answer.get("active"):
            error = ExchangeError(
                "invalid_grant", answer.get("reason") or "The subject token is not active"
            )
            if asked:  # the provider says so now: what was minted for its session ends
                error.ended_session = self._ended_session(token)
            raise error
        if self.settings.verification != "userinfo" and not self._for_us(answer.get("aud")):
            raise ExchangeError("invalid_grant", "The subject token is meant for another audience")
        username = answer.get(self.settings.username_claim)
        if not isinstance(username, str) or not username:
            raise ExchangeError(
                "invalid_grant",
                f"The subject token names no user (no {self.settings.username_claim!r} claim)",
            )
        groups = None
        if self.settings.groups_claim:
            found = answer.get(self.settings.groups_claim)
            if isinstance(found, list) and all(isinstance(g, str) for g in found):
                groups = tuple(found)
        session = self._session(answer, token)
        exp = answer.get("exp")
        expires_at = float(exp) if isinstance(exp, (int, float)) else None
        if asked:  # once per provider answer, not per exchange: hits write nothing
            self.sessions.seen(digest(token), session, username, expires_at)
        return Identity(
            username=username,
            groups=groups,
            session=session,
            expires_at=expires_at,
            cached=not asked,
        )

    def stats(self) -> dict[str, int]:
        """Exchanges verified from the cache (hits) or by asking the provider (misses), and
        the provider calls, refusals for a full bound (busy) and failures (errors)."""
        names = ("hits", "misses", "provider_calls", "provider_busy", "provider_errors")
        return {name: self.counts[name] for name in names}

    def _ended_session(self, token: str) -> tuple[str, str] | None:
        """The (session, username claim) ``token`` was last seen active with, if it ended
        before its expiry (a token that merely expired ends nothing: what was minted for
        it never outlives it, and a refreshed token of the same session may live on)."""
        seen = self.sessions.ended(digest(token))
        if seen is None:
            return None
        session, username, expires_at = seen
        if expires_at is not None and expires_at <= time.time():
            return None
        return session, username

    def _for_us(self, audience: Any) -> bool:
        """Whether the token names one of ``allowed_audiences`` (RFC 7519 ``aud``: one or a list)."""
        audiences = [audience] if isinstance(audience, str) else audience
        return isinstance(audiences, list) and bool(
            set(audiences) & set(self.settings.allowed_audiences)
        )

    def _session(self, answer: dict[str, Any], token: str) -> str:
        """``upstream:<digest>`` of the token's sid, else jti, else the token itself."""
        for claim in ("sid", "jti"):
            value = answer.get(claim)
            if isinstance(value, str) and value:
                origin = f"{self.settings.issuer}\0{claim}\0{value}"
                return f"{KIND}:{hashlib.sha256(origin.encode()).hexdigest()[:40]}"
        return f"{KIND}:{digest(token)[:40]}"

    async def close(self) -> None:
        await self._http.aclose()
