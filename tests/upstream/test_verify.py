"""Verifying upstream tokens at a real provider: JWKS refresh, userinfo, settings refused."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from traitlets import TraitError

from jupyter_token_cache.upstream import TokenExchange, exchange_verifier
from jupyter_token_cache.upstream.exchange import ExchangeError, UpstreamVerifier
from jupyter_token_cache.upstream.settings import ASYMMETRIC

from ..fuzz import Tally, nasty_text
from ..oidc.jwks import AUDIENCE, KEYS, KeySet, running_keyset
from ..oidc.server import HUB_CLIENT, OIDCProvider
from .sessions import Sessions

LOG = logging.getLogger("test")


def tokens(provider: OIDCProvider, **settings: object) -> UpstreamVerifier:
    exchange = TokenExchange(issuer=provider.issuer, allowed_audiences=["jupyterhub"],
                             client_id=HUB_CLIENT[0], client_secret=HUB_CLIENT[1], **settings)  # fmt: skip
    made = exchange_verifier(exchange, LOG, sessions=Sessions())
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
        exchange_verifier(TokenExchange(), LOG, sessions=Sessions()) is None
    )  # no issuer: no exchange
    with pytest.raises(ValueError, match="allowed_audiences"):
        exchange_verifier(TokenExchange(issuer=oidc_provider.issuer), LOG, sessions=Sessions())
    with pytest.raises(ValueError, match="client_id"):
        exchange_verifier(
            TokenExchange(issuer=oidc_provider.issuer, allowed_audiences=["x"]),
            LOG,
            sessions=Sessions(),
        )


def test_the_provider_key_file_is_a_private_jwk(oidc_provider: OIDCProvider) -> None:
    key = json.loads((oidc_provider.dir / "key.json").read_text())
    assert key["kid"] == oidc_provider.kid and key["alg"] == "RS256" and "d" in key


# -- bad input (issue 23): an invalid token is invalid_grant, never an exception -------------


@pytest.fixture
def keyset() -> Iterator[KeySet]:
    """A key set of every key type, each key named by a kid."""
    yield from running_keyset()


def jwks_tokens(keyset: KeySet, **settings: object) -> UpstreamVerifier:
    exchange = TokenExchange(
        issuer=keyset.issuer,
        jwks_uri=f"{keyset.url}/jwks",
        verification="jwt",
        allowed_audiences=[AUDIENCE],
        algorithms=list(ASYMMETRIC),
        **settings,
    )
    made = exchange_verifier(exchange, LOG, sessions=Sessions())
    assert made is not None
    return made


async def refused(checker: UpstreamVerifier, token: str) -> ExchangeError:
    with pytest.raises(ExchangeError) as refusal:
        await checker.identify(token)
    return refusal.value


async def test_a_header_naming_another_key_type_is_invalid_not_an_error(
    oidc_provider: OIDCProvider, keyset: KeySet
) -> None:
    """ES256 or EdDSA with the kid of the provider's RSA key: PyJWT's prepare_key raised."""
    checker = tokens(oidc_provider, verification="jwt", algorithms=list(ASYMMETRIC))
    claims = {**keyset.claims(), "iss": oidc_provider.issuer}
    for key in ("ec256", "ec384", "ec521", "ed25519"):
        forged = keyset.sign(claims, key, kid=oidc_provider.kid)
        assert (await refused(checker, forged)).error == "invalid_grant", key
    await checker.close()


async def test_every_key_type_verifies_its_own_algorithm_only(keyset: KeySet) -> None:
    checker = jwks_tokens(keyset)
    for key, (_, alg) in KEYS.items():
        identity = await checker.identify(keyset.sign(keyset.claims("bob"), key))
        assert identity.username == "bob", key
        for other, (_, wrong) in KEYS.items():  # another key type's algorithm in the header
            if wrong != alg:
                forged = keyset.sign(keyset.claims(), key, alg=wrong)
                assert (await refused(checker, forged)).error == "invalid_grant", (key, wrong)
                kid = keyset.sign(keyset.claims(), other, kid=key)  # another key's kid
                assert (await refused(checker, kid)).error == "invalid_grant", (key, other)
    await checker.close()


async def test_a_jwks_whose_only_key_has_no_kid() -> None:
    """RFC 7517 makes kid optional: a key set of one key without it is still used."""
    for keyset in running_keyset(published=("rsa",), kids=False):
        checker = jwks_tokens(keyset)
        for header in ({"kid": None}, {"kid": "some-kid"}):
            identity = await checker.identify(keyset.sign(keyset.claims("carol"), **header))
            assert identity.username == "carol", header
        forged = keyset.sign(keyset.claims(), foreign=True, kid=None)
        assert (await refused(checker, forged)).error == "invalid_grant"
        await checker.close()


async def test_userinfo_never_sends_a_token_that_cannot_be_one(oidc_provider: OIDCProvider) -> None:
    """Non-ASCII, CR, LF, control characters: refused as invalid before any provider call."""
    checker = tokens(oidc_provider, verification="userinfo")
    for token in ("é" * 40, "abc\r\nX-Injected: yes", "abc\n", "a\x00b", "a\x7fb", "two words"):
        refusal = await refused(checker, token)
        assert (refusal.error, refusal.status) == ("invalid_grant", 400), repr(token)
    stats = checker.stats()
    assert (stats["provider_calls"], stats["provider_errors"]) == (0, 0), stats
    await checker.close()


async def test_inactive_answers_stay_generic_and_log_the_reason_at_debug(
    keyset: KeySet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    checker = jwks_tokens(keyset)
    expired = keyset.sign(keyset.claims(exp=int(time.time()) - 60))
    other = keyset.sign(keyset.claims(aud="other-app"))
    for token, reason in ((expired, "expired"), (other, "another audience")):
        refusal = await refused(checker, token)
        assert refusal.description == "The subject token is not active"
        logged = [r for r in caplog.records if reason in r.getMessage()]
        assert logged and all(r.levelno == logging.DEBUG for r in logged), reason
        assert not [r for r in caplog.records if token in r.getMessage()]
    await checker.close()


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    token=nasty_text | st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
    verification=st.sampled_from(["introspection", "userinfo", "jwt"]),
)
async def test_fuzz_subject_tokens_in_every_mode(
    oidc_provider: OIDCProvider, token: str, verification: str
) -> None:
    """Control characters and non-ASCII text as subject tokens, in each verification mode
    against the real provider: an invalid grant, never another error nor a provider error."""
    checker = tokens(oidc_provider, verification=verification)
    try:
        with pytest.raises(ExchangeError) as refused:
            await checker.identify(token)
        TALLY.add("verifier", verification, refused.value.status)
        assert refused.value.error == "invalid_grant", refused.value.description
        assert checker.stats()["provider_errors"] == 0
        TALLY.checks["provider calls"] += checker.stats()["provider_calls"]
    finally:
        await checker.close()


TALLY = Tally()


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    if TALLY.statuses:
        print("\nsubject tokens at the verifier (real provider):\n" + TALLY.table())
