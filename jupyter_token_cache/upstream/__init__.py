"""Upstream tokens: verifying the site identity provider's access tokens (the exchange), and
handing the user's own to their notebooks (``c.UpstreamTokens``). No Tornado here."""

from __future__ import annotations

import logging
from typing import Any

from .exchange import ExchangeError, Identity, UpstreamSessions, UpstreamVerifier
from .settings import TokenExchange, UpstreamCache
from .targets import UpstreamTokens

__all__ = [
    "ExchangeError",
    "Identity",
    "TokenExchange",
    "UpstreamCache",
    "UpstreamSessions",
    "UpstreamTokens",
    "UpstreamVerifier",
    "exchange_verifier",
]


def exchange_verifier(
    settings: TokenExchange, log: logging.Logger, *, sessions: UpstreamSessions, **kwargs: Any
) -> UpstreamVerifier | None:
    """The exchange's verifier for ``settings``, or None when no issuer is configured.

    A setting that cannot work (no audiences, introspection without a client) stops the
    hub at start, not at the first exchange.
    """
    if not settings.enabled:
        return None
    problem = None
    if settings.verification == "userinfo":
        log.warning(
            "c.TokenExchange.verification = 'userinfo': the provider's userinfo says nothing of "
            "a token's audience or expiry, so neither is checked; prefer introspection or jwt"
        )
    elif not settings.allowed_audiences:
        problem = "allowed_audiences is empty: set the audience(s) the hub's tokens carry"
    elif settings.verification == "introspection" and not settings.client_id:
        problem = "introspection needs client_id and client_secret"
    if problem:
        raise ValueError(f"c.TokenExchange: {problem}")
    # answers are kept introspection_ttl at most by CachedAnswers
    cache = UpstreamCache(parent=settings)
    return UpstreamVerifier(settings=settings, cache=cache, sessions=sessions, log=log, **kwargs)
