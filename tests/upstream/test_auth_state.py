"""The upstream tokens in an auth state: oauthenticator's layouts, stamped, refreshed and ended."""

from __future__ import annotations

import jwt

from jupyter_token_cache.upstream.auth_state import (
    STAMP,
    UNSTAMPED,
    ended,
    ended_by,
    held,
    refreshed,
    revocable,
    session_of,
    stamped,
)

NOW = 1_000_000.0


def generic(access: str = "at-1", refresh: str | None = "rt-1", expires_in: int = 300) -> dict:
    """What GenericOAuthenticator's build_auth_state_dict keeps."""
    response = {
        "access_token": access,
        "refresh_token": refresh,
        "id_token": "id-1",
        "expires_in": expires_in,
        "token_type": "Bearer",
        "scope": "openid s3:read",
    }
    return {
        "access_token": access,
        "refresh_token": refresh,
        "id_token": "id-1",
        "scope": ["openid", "s3:read"],
        "token_response": response,
        "oauth_user": {"sub": "alice"},
    }


def globus() -> dict:
    """What GlobusOAuthenticator keeps: tokens by resource server."""
    return {
        "client_id": "c",
        "token_response": {"access_token": "auth-at"},
        "tokens": {
            "transfer.api.globus.org": {
                "access_token": "tr-at",
                "refresh_token": "tr-rt",
                "expires_in": 172800,
                "scope": "urn:transfer",
                "token_type": "Bearer",
                "resource_server": "transfer.api.globus.org",
            }
        },
        "globus_user": {"sub": "x"},
    }


def test_a_login_is_a_new_session_and_its_tokens_expire_from_when_they_came() -> None:
    state = generic()
    assert session_of(state) == UNSTAMPED  # saved before the package was installed
    first = stamped(state, now=NOW, new=True)
    second = stamped(state, now=NOW, new=True)
    assert session_of(first) != session_of(second)  # each login its own session
    login = held(first)
    assert login is not None and login.expires_at == NOW + 300 and login.issued_at == NOW
    assert login.refresh_token == "rt-1" and login.scope == "openid s3:read"
    # stamped again later (JupyterHub's refresh returned the same token): no new lifetime
    later = stamped(first, now=NOW + 200, previous=first)
    assert held(later).expires_at == NOW + 300 and session_of(later) == session_of(first)


def test_a_refresh_keeps_the_session_and_the_rotated_refresh_token_everywhere() -> None:
    state = stamped(generic(), now=NOW, new=True)
    answer = {"access_token": "at-2", "refresh_token": "rt-2", "expires_in": 60, "id_token": "id-2"}
    after = refreshed(state, answer, now=NOW + 250)
    assert session_of(after) == session_of(state)
    login = held(after)
    assert (login.access_token, login.refresh_token, login.expires_at) == (
        "at-2",
        "rt-2",
        NOW + 310,
    )
    assert after["token_response"]["refresh_token"] == "rt-2" and after["id_token"] == "id-2"
    # the provider did not rotate: the refresh token is kept, as oauthenticator keeps it
    kept = refreshed(after, {"access_token": "at-3", "expires_in": 60}, now=NOW + 300)
    assert held(kept).refresh_token == "rt-2" and kept["token_response"]["refresh_token"] == "rt-2"


def test_a_target_by_resource_indicator_rotates_only_the_refresh_token() -> None:
    state = stamped(generic(), now=NOW, new=True)
    after = refreshed(
        state,
        {"access_token": "s3-token", "refresh_token": "rt-2", "expires_in": 600},
        now=NOW + 1,
        token=False,
    )
    assert held(after).access_token == "at-1" and held(after).expires_at == NOW + 300
    assert after["refresh_token"] == "rt-2" and after["token_response"]["refresh_token"] == "rt-2"
    assert "s3-token" not in repr(after)


def test_globus_tokens_by_resource_server() -> None:
    state = stamped(globus(), now=NOW, new=True)
    assert session_of(state) not in (None, UNSTAMPED)
    transfer = held(state, "transfer.api.globus.org")
    assert transfer.access_token == "tr-at" and transfer.expires_at == NOW + 172800
    assert held(state) is None and held(state, "other") is None
    after = refreshed(
        state,
        {"access_token": "tr-at-2", "expires_in": 100},
        now=NOW + 5,
        resource_server="transfer.api.globus.org",
    )
    transfer = held(after, "transfer.api.globus.org")
    assert (transfer.access_token, transfer.refresh_token) == ("tr-at-2", "tr-rt")
    assert transfer.expires_at == NOW + 105


def test_expiry_from_a_jwt_or_unknown() -> None:
    token = jwt.encode({"exp": int(NOW) + 50}, "k" * 32, algorithm="HS256")
    state = generic(access=token)
    del state["token_response"]["expires_in"]
    assert held(state).expires_at == NOW + 50 and held(state).issued_at is None
    assert held(generic(access="opaque")).expires_at is None  # unstamped, opaque: nobody knows
    github = {"access_token": "gho_x", "refresh_token": None, "token_response": {}}
    assert held(stamped(github, now=NOW, new=True)).expires_at is None


def test_an_ended_session_holds_no_secret_and_no_token() -> None:
    state = stamped(globus() | generic(), now=NOW, new=True)
    gone = ended(state, "logout", now=NOW + 1)
    assert session_of(gone) is None and ended_by(gone) == "logout"
    assert gone[STAMP]["session"] == state[STAMP]["session"]
    text = repr(gone)
    for secret in ("at-1", "rt-1", "id-1", "tr-at", "tr-rt"):
        assert secret not in text
    assert gone["oauth_user"] == {"sub": "alice"}  # what is not a secret stays
    # access tokens are revoked before refresh tokens (a refresh token may take its grant)
    assert [hint for _, hint in revocable(state)] == ["access_token"] * 2 + ["refresh_token"] * 2
    assert session_of(None) is None and session_of({"oauth_user": {}}) is None
