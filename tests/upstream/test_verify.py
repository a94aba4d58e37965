"""Verifying upstream tokens at a real provider: JWKS refresh, userinfo, settings refused."""

from __future__ import annotations

import json
import logging

import pytest
from traitlets import TraitError

from jupyter_token_cache.upstream import TokenExchange, upstream_tokens
from jupyter_token_cache.upstream.exchange import ExchangeError, UpstreamTokens

from ..oidc.server import HUB_CLIENT, OIDCProvider

LOG = logging.getLogger("test")


class Sessions:
    """Upstream sessions in a dict (the hub keeps them in its database)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str, float | None]] = {}

    def seen(self, name: str, session: str, username: str, expires_at: float | None) -> None:
        self.rows[name] = (session, username, expires_at)

    def ended(self, name: str) -> tuple[str, str, float | None] | None:
        return self.rows.pop(name, None)


def tokens(provider: OIDCProvider, **settings: object) -> UpstreamTokens:
    exchange = TokenExchange(issuer=provider.issuer, allowed_audiences=["jupyterhub"],
                             client_id=HUB_CLIENT[0], client_secret=HUB_CLIENT[1], **settings)  # fmt: skip
    made = upstream_tokens(exchange, LOG, sessions=Sessions())
    assert made is not None
    return made


async def test_keys_are_fetched_again_for_an_unknown_kid_at_most_once_an_interval(
    own_oidc_provider: OIDCProvider,
) -> None:
    provider = own_oidc_provider
    checker = tokens(provider, verification="jwt", jwks_refresh_interval=3600)
    first = await checker.identify(provider.token("alice", "urn:hub:jwt"))
    assert first.username == "alice" and first.groups == ("staff", "science")
    fetched = provider.requests("GET /jwks")
    for n in range(5):  # forged key ids: one refetch per interval at most (here: none)
        with pytest.raises(ExchangeError) as refused:
            await checker.identify(provider.forge({"iss": provider.issuer}, kid=f"forged-{n}"))
        assert refused.value.error == "invalid_grant"
    assert provider.requests("GET /jwks") == fetched
    await checker.close()


async def test_a_rotated_key_is_picked_up(own_oidc_provider: OIDCProvider) -> None:
    provider = own_oidc_provider
    checker = tokens(provider, verification="jwt", jwks_refresh_interval=0)
    await checker.identify(provider.token("alice", "urn:hub:jwt"))
    provider.rotate_key()
    provider.restart()
    identity = await checker.identify(provider.token("bob", "urn:hub:jwt"))
    assert identity.username == "bob"
    await checker.close()


async def test_userinfo_verification(oidc_provider: OIDCProvider) -> None:
    checker = tokens(oidc_provider, verification="userinfo")
    identity = await checker.identify(oidc_provider.token("bob", ""))
    assert identity.username == "bob" and identity.groups == ("science",)
    with pytest.raises(ExchangeError):
        await checker.identify("not-a-token")
    await checker.close()


def test_symmetric_and_none_algorithms_are_refused() -> None:
    for algorithms in (["HS256"], ["none"], ["RS256", "HS512"]):
        with pytest.raises(TraitError):
            TokenExchange(algorithms=algorithms)


def test_settings_that_cannot_work_stop_the_hub(oidc_provider: OIDCProvider) -> None:
    assert (
        upstream_tokens(TokenExchange(), LOG, sessions=Sessions()) is None
    )  # no issuer: no exchange
    with pytest.raises(ValueError, match="allowed_audiences"):
        upstream_tokens(TokenExchange(issuer=oidc_provider.issuer), LOG, sessions=Sessions())
    with pytest.raises(ValueError, match="client_id"):
        upstream_tokens(
            TokenExchange(issuer=oidc_provider.issuer, allowed_audiences=["x"]),
            LOG,
            sessions=Sessions(),
        )


def test_the_provider_key_file_is_a_private_jwk(oidc_provider: OIDCProvider) -> None:
    key = json.loads((oidc_provider.dir / "key.json").read_text())
    assert key["kid"] == oidc_provider.kid and key["alg"] == "RS256" and "d" in key
