"""Policy settings are checked when the hub starts, not when a request comes."""

from __future__ import annotations

import pytest
from jupyterhub.auth import DummyAuthenticator, PAMAuthenticator
from traitlets import TraitError

from jupyter_token_cache import TokenCache, TokenCacheMixin, with_token_cache
from jupyter_token_cache.tokens.lineage import Lineage
from jupyter_token_cache.tokens.models import ParentSession, TokenRef, shown


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


def test_lineage_names_the_original_session_and_the_credential() -> None:
    root, credential = TokenRef("a1", "f" * 32), TokenRef("a2", "e" * 32)
    session = ParentSession(user="alice", ref="token:a1:" + "f" * 32, kind="token",
                            expires_at=123.0, scopes=frozenset({"x"}), root=root)  # fmt: skip
    lineage = Lineage.of(session, kind="notebook")
    parent = lineage.parent(user="alice2", scopes=frozenset({"y"}), credential=credential)
    assert (parent.ref, parent.kind, parent.expires_at, parent.root) == (
        session.ref,
        "token",
        123.0,
        root,
    )
    assert parent.minted == "notebook" and parent.via == credential and parent.scopes == {"y"}
    assert parent.user == "alice2"  # the name is the current one: lineage never binds it


@pytest.mark.parametrize("trait", ["event_buffer_size", "event_queue_size", "event_heartbeat"])
def test_event_settings_are_positive(trait: str) -> None:
    with pytest.raises(TraitError):
        TokenCache(**{trait: 0})


def test_server_session_scopes_is_server_or_user() -> None:
    assert TokenCache().server_session_scopes == "server"
    with pytest.raises(TraitError):
        TokenCache(server_session_scopes="everything")


def test_secret_looking_input_is_never_echoed() -> None:
    assert shown("dask") == "'dask'"
    assert shown("0123456789abcdef0123456789abcdef") == "(a value not shown)"
    assert shown("read:users!user=0123456789abcdef0123456789abcdef") == "(a value not shown)"
