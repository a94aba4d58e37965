"""TokenCache.problems: settings valid alone that do not fit together (hub start, check-config)."""

from __future__ import annotations

from jupyter_token_cache import TokenCache
from jupyter_token_cache.scopes import scope_error


def settings(problems: list[tuple[str, str, str]]) -> list[str]:
    return [setting for setting, _, _ in problems]


def test_defaults_have_no_problem() -> None:
    assert TokenCache().problems(scope_error) == []


def test_lifetimes_under_minimum_lifetime() -> None:
    cache = TokenCache(
        notebook_lifetime=200,
        services={"dask": {"scopes": ["read:users!user"], "lifetime": 100}},
    )
    found = cache.problems()
    assert settings(found) == [
        "TokenCache.notebook_lifetime",
        "TokenCache.services['dask']['lifetime']",
    ]
    assert all("minimum_lifetime = 300" in message and fix for _, message, fix in found)


def test_the_hubs_cap_counts() -> None:
    (problem,) = TokenCache().problems(max_lifetime=60)
    assert problem.setting == "TokenCache.notebook_lifetime"
    assert "token_expires_in_max_seconds" in problem.message


def test_unknown_scopes_and_filters() -> None:
    cache = TokenCache(
        notebook_scopes=["read:users!user", "read:nonsense", "access:servers!bogus=x"],
        services={"x": {"scopes": ["access:services!service=x", "custom:not-defined"]}},
    )
    found = cache.problems(scope_error)
    assert settings(found) == [
        "TokenCache.notebook_scopes",
        "TokenCache.notebook_scopes",
        "TokenCache.services['x']['scopes']",
    ]
    assert "read:nonsense" in found[0].message and "!bogus=x" in found[1].message
    assert cache.problems() == []  # scopes unchecked without the hub's definitions


def test_empty_filter_values() -> None:
    """``!user=`` and its kind parse as scopes (JupyterHub's check passes them) but every
    expansion refuses them: the hub then answered every notebook request 400."""
    cache = TokenCache(
        notebook_scopes=["read:users:name!user=", "read:users!group=", "access:servers!user"],
        services={"x": {"scopes": ["access:services!service=", "read:users!server="]}},
    )
    for found in (cache.problems(scope_error), cache.problems()):
        assert settings(found) == [
            "TokenCache.notebook_scopes",
            "TokenCache.notebook_scopes",
            "TokenCache.services['x']['scopes']",
            "TokenCache.services['x']['scopes']",
        ]
        assert "'read:users:name!user='" in found[0].message and "empty" in found[0].message
        assert all(fix for _, _, fix in found)
