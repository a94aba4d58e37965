"""Policy settings are checked when the hub starts, not when a request comes."""

from __future__ import annotations

import pytest
from jupyterhub.auth import DummyAuthenticator, PAMAuthenticator
from traitlets import TraitError

from jupyter_token_cache import TokenCache, TokenCacheMixin, with_token_cache
from jupyter_token_cache.tokens.lineage import Lineage
from jupyter_token_cache.tokens.models import ParentSession, shown


@pytest.mark.parametrize(
    "services",
    [
        {"dask": {}},
        {"dask": {"scopes": []}},
        {"dask": {"scopes": "read:users"}},
        {"dask": {"scopes": ["read:users"], "lifetime": 0}},
        {"dask": {"scopes": ["read:users"], "lifetime": True}},
        {"dask": {"scopes": ["read:users"], "extra": 1}},
        {"": {"scopes": ["read:users"]}},
        {"dask": ["read:users"]},
    ],
)
def test_bad_service_policies_are_refused(services: dict) -> None:
    with pytest.raises(TraitError):
        TokenCache(services=services)


def test_service_policy_is_normalised() -> None:
    cache = TokenCache(services={"dask": {"scopes": ["b", "a", "a"]}})
    assert cache.services == {"dask": {"scopes": ["a", "b"], "lifetime": 3600}}


@pytest.mark.parametrize("trait", ["notebook_lifetime", "minimum_lifetime"])
def test_lifetimes_are_positive(trait: str) -> None:
    with pytest.raises(TraitError):
        TokenCache(**{trait: 0})


def test_with_token_cache_accepts_names_paths_and_classes() -> None:
    by_name = with_token_cache("dummy")
    assert issubclass(by_name, TokenCacheMixin) and issubclass(by_name, DummyAuthenticator)
    assert issubclass(with_token_cache("jupyterhub.auth.PAMAuthenticator"), PAMAuthenticator)
    assert with_token_cache(by_name) is by_name
    with pytest.raises(TypeError):
        with_token_cache("collections.OrderedDict")


def test_lineage_is_bound_to_owner_and_secret() -> None:
    lineage = Lineage(b"s" * 32)
    session = ParentSession(user="alice", ref=lineage.session_ref("token:1"), kind="token",
                            expires_at=123.0, scopes=frozenset())  # fmt: skip
    note = lineage.note(session, minted="notebook")
    assert lineage.read("alice", note)["r"] == session.ref
    assert lineage.read("bob", note) is None
    assert Lineage(b"t" * 32).read("alice", note) is None
    assert lineage.read("alice", note.replace("notebook token", "internal token")) is not None  # label is prose
    assert lineage.read("alice", note[:-5] + "AAAA]") is None
    assert "token:1" not in note


def test_secret_looking_input_is_never_echoed() -> None:
    assert shown("dask") == "'dask'"
    assert shown("0123456789abcdef0123456789abcdef") == "(a value not shown)"
    assert shown("read:users!user=0123456789abcdef0123456789abcdef") == "(a value not shown)"
