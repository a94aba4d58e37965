"""The token exchange's settings (``c.TokenExchange``) and its answer cache (``c.UpstreamCache``)."""

from __future__ import annotations

import os
from typing import Any

from traitlets import (
    Bool,
    CaselessStrEnum,
    Float,
    Integer,
    List,
    TraitError,
    Unicode,
    default,
    validate,
)
from traitlets.config import Configurable

from ..cache import CacheEngine

#: Asymmetric JWS algorithms: an HMAC ("HS256") or "none" can never be allowed, since
#: an upstream provider's keys are public.
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA")  # fmt: skip


class UpstreamCache(CacheEngine):
    """The cache engine holding the identity provider's answers (``c.UpstreamCache``).

    Every setting of the token cache engine applies (backend, url, encryption_key,
    max_size, ...); an answer is kept ``TokenExchange.introspection_ttl`` seconds at
    most, never past the upstream token's expiry.
    """

    @default("namespace")
    def _namespace_default(self) -> str:
        return "jupyter-token-cache-upstream"


class TokenExchange(Configurable):
    """Trade an access token of the site's identity provider for a hub token (RFC 8693).

    Off until ``issuer`` is set. The provider is asked once per upstream token and its
    answer cached (see ``introspection_ttl``); when it cannot be asked, the exchange is
    refused with 503: an unverifiable credential is never trusted.
    """

    issuer = Unicode(
        "",
        config=True,
        help="""The identity provider's issuer URL, exactly as its tokens' "iss" claim and
        its discovery document (<issuer>/.well-known/openid-configuration) name it.
        Empty (default): no token exchange.""",
    )
    verification = CaselessStrEnum(
        ["introspection", "jwt", "userinfo"],
        "introspection",
        config=True,
        help="""How an upstream token is verified. "introspection": RFC 7662 at the
        provider's introspection endpoint, authenticated with client_id and
        client_secret (opaque and JWT tokens alike; a revocation is seen within
        introspection_ttl). "jwt": a JWT access token checked here against the
        provider's published keys (JWKS), its iss, aud, exp and nbf; no call per token,
        but a revocation is not seen before the token expires. "userinfo": the OIDC
        userinfo endpoint (no audience or expiry is known: use only where
        introspection is not offered).""",
    )
    client_id = Unicode(
        "",
        config=True,
        help="""Client id the hub authenticates with at the introspection endpoint.""",
    )
    client_secret = Unicode(
        "",
        config=True,
        help="""Client secret for the introspection endpoint (defaults to
        $JUPYTERHUB_TOKEN_EXCHANGE_CLIENT_SECRET).""",
    )
    introspection_endpoint = Unicode(
        "",
        config=True,
        help="""Introspection URL; empty: from the discovery document.""",
    )
    userinfo_endpoint = Unicode(
        "",
        config=True,
        help="""Userinfo URL; empty: from the discovery document.""",
    )
    jwks_uri = Unicode(
        "",
        config=True,
        help="""URL of the provider's signing keys; empty: from the discovery document.""",
    )
    algorithms = List(
        Unicode(),
        ["RS256", "ES256", "PS256", "EdDSA"],
        config=True,
        help="""JWS algorithms a JWT access token may be signed with (verification =
        "jwt"). Asymmetric ones only: "none" and HMAC algorithms are refused.""",
    )
    allowed_audiences = List(
        Unicode(),
        config=True,
        help="""Audiences an upstream token must name (one of; its "aud" claim, or the
        introspection answer's "aud"). Required: a token meant for another application
        is never accepted.""",
    )
    username_claim = Unicode(
        "preferred_username",
        config=True,
        help="""Claim naming the user (Globus Auth's introspection: "username"). It goes
        through the authenticator's normalize_username, blocked and allowed checks, as
        at the login page.""",
    )
    groups_claim = Unicode(
        "groups",
        config=True,
        help="""Claim listing the user's groups: used by the authenticator's allowed
        groups and, with Authenticator.manage_groups, synced onto the user as at login.
        Empty: none.""",
    )
    auto_create_users = Bool(
        False,
        config=True,
        help="""Create a hub user the authenticator allows on first exchange. Off: only
        existing users may exchange.""",
    )
    introspection_ttl = Float(
        30.0,
        config=True,
        help="""Longest (seconds) an active answer of the provider is cached; never past
        the token's expiry. Globus Auth's TokenChecker keeps its answers 30 s too.""",
    )
    negative_ttl = Float(
        5.0,
        config=True,
        help="""Seconds an inactive answer (expired, revoked, unknown, wrong audience) is
        cached, so a client repeating a bad token costs one provider call a period.""",
    )
    max_concurrent_calls = Integer(
        10,
        config=True,
        help="""Most calls to the provider in flight at once; more requests wait their
        turn within `timeout`.""",
    )
    timeout = Float(
        5.0,
        config=True,
        help="""Seconds an exchange may wait for and take at the provider; past it the
        exchange is refused with 503 (temporarily_unavailable).""",
    )
    leeway = Float(
        0.0,
        config=True,
        help="""Seconds of clock skew allowed when checking a JWT's exp and nbf.""",
    )
    jwks_refresh_interval = Float(
        60.0,
        config=True,
        help="""Fewest seconds between two fetches of the provider's keys prompted by an
        unknown key id, so a flood of forged tokens cannot make the hub hammer it.""",
    )

    @default("client_secret")
    def _client_secret_default(self) -> str:
        return os.environ.get("JUPYTERHUB_TOKEN_EXCHANGE_CLIENT_SECRET", "")

    @validate("algorithms")
    def _check_algorithms(self, proposal: Any) -> list[str]:
        bad = [a for a in proposal.value if a not in ASYMMETRIC]
        if bad:
            raise TraitError(
                f"TokenExchange.algorithms: only asymmetric algorithms ({', '.join(ASYMMETRIC)}) "
                f"may verify upstream tokens, not {', '.join(bad)}"
            )
        return list(proposal.value)

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)
