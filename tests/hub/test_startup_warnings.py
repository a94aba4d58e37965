"""As the hub starts: it logs the settings that do not fit together (TokenCache.problems),
and moves its objects out of the garbage collector's way (TokenCache.freeze_gc)."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator

import pytest

from .conftest import Hub


@pytest.mark.hub_config(
    TokenCache__notebook_lifetime=120, TokenCache__notebook_scopes=["read:nonsense"]
)
async def test_problems_are_warnings_at_start(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    started = caplog.get_records("setup")  # the hub fixture starts the hub
    warned = [r.getMessage() for r in started if r.levelno == logging.WARNING]
    assert any(m.startswith("TokenCache.notebook_lifetime: tokens live 120 s") for m in warned)
    assert any(m.startswith("TokenCache.notebook_scopes:") and "read:nonsense" in m for m in warned)
    # the fixture's dask policy names access:services!service=dask, which no user holds
    assert any(
        m.startswith(
            "TokenCache.services['dask']['scopes']: no user can hold "
            "'access:services!service=dask' through the 'user' role (self)"
        )
        for m in warned
    ), warned


@pytest.mark.hub_config(
    JupyterHub__load_roles=[{"name": "user", "scopes": ["self", "access:services!service=dask"]}]
)
async def test_scopes_users_hold_are_not_warned_of(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    started = caplog.get_records("setup")
    warned = [r.getMessage() for r in started if r.levelno == logging.WARNING]
    assert not [m for m in warned if "no user can hold" in m], warned


def test_an_authenticator_name_says_which_package_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_token_cache import with_token_cache
    from jupyter_token_cache.hub.authenticator import AuthenticatorNotFound

    from ..cli.test_config_commands import without_oauthenticator

    without_oauthenticator(monkeypatch)
    with pytest.raises(AuthenticatorNotFound) as raised:
        with_token_cache("github")
    message = str(raised.value)
    assert "oauthenticator package, which is not installed" in message
    assert "pip install oauthenticator" in message
    assert "Installed authenticator entry points: default, dummy, null, pam" in message
    assert isinstance(raised.value, ImportError)  # as the failed import it replaces
    with pytest.raises(AuthenticatorNotFound, match="no installed package declares"):
        with_token_cache("githib")
    with pytest.raises(AuthenticatorNotFound, match="No module named 'nowhere'"):
        with_token_cache("nowhere.Authenticator")


@pytest.mark.hub_config(TokenCache__notebook_scopes=["read:users:name!user=", "read:users!user"])
async def test_an_empty_filter_is_a_warning_at_start(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    warned = [r.getMessage() for r in caplog.get_records("setup") if r.levelno == logging.WARNING]
    assert any(m.startswith("TokenCache.notebook_scopes:") and "!user=" in m for m in warned)


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # this process runs every test's hub: let them go


@pytest.mark.hub_config(TokenCache__freeze_gc=True)
async def test_the_hub_freezes_what_it_holds_once_started(unfrozen: None, hub: Hub) -> None:
    assert gc.get_freeze_count() > 10_000  # the hub's modules, classes, settings and state
