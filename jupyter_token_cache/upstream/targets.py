"""``c.UpstreamTokens``: handing the user's identity-provider tokens to notebooks and services.

The other direction of the token exchange (:class:`~.settings.TokenExchange`, which takes
the provider's tokens in): here the hub hands the user's own provider tokens out, from
the auth state the authenticator keeps, refreshed once and cached
(:class:`~.service.UpstreamTokenService`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from traitlets import Bool, Dict, Float, Integer, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from ..scopes import UPSTREAM_SCOPE

#: How a target's token is obtained from the provider.
METHODS = ("resource", "exchange", "globus", "globus-dependent")
#: The field each method needs (one of, for "exchange").
_NEEDS = {
    "resource": ("resource", "scopes"),
    "exchange": ("audience", "resource"),
    "globus": ("resource_server",),
    "globus-dependent": ("resource_server",),
}
_FIELDS = ("method", "resource", "audience", "resource_server", "scopes", "scope")


@dataclass(frozen=True, slots=True)
class Target:
    """A downstream audience, and how to get a token for it (one of ``UpstreamTokens.targets``)."""

    name: str
    #: "resource" (RFC 8707 on the refresh grant), "exchange" (RFC 8693 at the provider),
    #: "globus" (a resource server's token in GlobusOAuthenticator's auth state) or
    #: "globus-dependent" (Globus Auth's dependent token grant).
    method: str
    resource: str | None
    audience: str | None
    resource_server: str | None
    #: The scopes asked for, sorted (empty: whatever the provider gives the target).
    scopes: tuple[str, ...]
    #: The scope a caller must hold to ask for this target.
    scope: str


class UpstreamTokens(Configurable):
    """Hand the user's identity-provider tokens to their notebooks and services.

    ``POST /hub/api/token-cache/upstream`` answers a caller holding ``scope`` with the
    access token in its user's auth state (as oauthenticator stores it), refreshed with
    the refresh-token grant when it has less than ``minimum_lifetime`` left — once per
    user, however many ask — or with a token for one of ``targets``, made for that
    audience and its scopes only. Off until ``enabled``; needs
    ``c.Authenticator.enable_auth_state = True``.
    """

    enabled = Bool(
        False,
        config=True,
        help="""Serve POST /hub/api/token-cache/upstream. The authenticator must keep auth
        state (c.Authenticator.enable_auth_state = True, with JUPYTERHUB_CRYPT_KEY set).""",
    )
    scope = Unicode(
        UPSTREAM_SCOPE,
        config=True,
        help="""The scope a caller (a server's token, a notebook token) must hold to get
        the user's upstream tokens; declare it in c.JupyterHub.custom_scopes and grant it
        to users and to the credentials that may ask (Spawner.server_token_scopes,
        TokenCache.notebook_scopes). A target may name a scope of its own.""",
    )
    login_token = Bool(
        True,
        config=True,
        help="""Hand out the login's own access token (a request naming no target). It
        carries every audience and scope the user consented to at login; set False to
        hand out target tokens only.""",
    )
    targets = Dict(
        config=True,
        help="""Downstream audiences: name -> {"method": ..., ...}. "resource": the
        refresh grant with {"resource": "<indicator>"} (RFC 8707) and/or the target's
        "scopes" (Entra ID: another resource's scopes); "exchange": RFC 8693 token
        exchange at the provider with {"audience": "<client>"} and/or {"resource": ...}
        (Keycloak's standard token exchange); "globus": the token of
        {"resource_server": "<name>"} in GlobusOAuthenticator's auth state;
        "globus-dependent": Globus Auth's dependent token grant for {"resource_server":
        ...}. Optional "scopes": [...] (the target's scopes, no more) and "scope": the
        custom scope a caller needs for this target (default: `scope`). Example:
        {"s3": {"method": "exchange", "audience": "minio", "scopes": ["s3:read"]}}.""",
    )
    minimum_lifetime = Integer(
        60,
        config=True,
        help="""Seconds a handed-out token has left, at least (a request may ask for more
        with minimum_lifetime). A cached token is handed out again while it has that
        much left; then it is refreshed.""",
    )
    timeout = Float(
        5.0,
        config=True,
        help="""Seconds a request waits for the identity provider; past it the request is
        refused with 503 (temporarily_unavailable). The call itself runs on (see
        grant_timeout), so a refresh token the provider rotates is never lost.""",
    )
    grant_timeout = Float(
        60.0,
        config=True,
        help="""Seconds a call to the provider's token endpoint may take before it is
        given up. Longer than `timeout` on purpose: a provider that answers late has
        still rotated the refresh token, and the answer must be kept.""",
    )
    issuer = Unicode(
        "",
        config=True,
        help="""The provider's issuer URL, to find its endpoints in its discovery document.
        Empty: the endpoints below, else the authenticator's token_url.""",
    )
    token_endpoint = Unicode(
        "",
        config=True,
        help="""The provider's token endpoint. Empty: from `issuer`'s discovery document,
        else the authenticator's token_url.""",
    )
    revocation_endpoint = Unicode(
        "",
        config=True,
        help="""The provider's RFC 7009 revocation endpoint. Empty: from `issuer`'s
        discovery document, else the authenticator's revocation_url if it has one, else
        nothing is revoked at the provider.""",
    )
    client_id = Unicode(
        "",
        config=True,
        help="""Client id at the token endpoint. Empty: the authenticator's client_id.""",
    )
    client_secret = Unicode(
        "",
        config=True,
        help="""Client secret at the token endpoint. Empty: the authenticator's
        client_secret (or $JUPYTERHUB_UPSTREAM_CLIENT_SECRET).""",
    )
    revoke_on_end = Bool(
        True,
        config=True,
        help="""When an upstream session ends here (logout, user deletion, an admin's
        reset with revoke), revoke at the provider the tokens handed out and the refresh
        token (RFC 7009), where the provider has a revocation endpoint.""",
    )

    @default("client_secret")
    def _client_secret_default(self) -> str:
        return os.environ.get("JUPYTERHUB_UPSTREAM_CLIENT_SECRET", "")

    @validate("targets")
    def _check_targets(self, proposal: Any) -> dict[str, dict[str, Any]]:
        checked = {}
        for name, target in proposal.value.items():
            checked[name] = _target(name, target)
        return checked

    @validate("minimum_lifetime")
    def _check_minimum(self, proposal: Any) -> int:
        if proposal.value < 1:
            raise TraitError("UpstreamTokens.minimum_lifetime must be a positive number of seconds")
        return int(proposal.value)

    @validate("timeout", "grant_timeout")
    def _check_timeouts(self, proposal: Any) -> float:
        if not proposal.value > 0:
            raise TraitError(f"UpstreamTokens.{proposal.trait.name} must be positive")
        return float(proposal.value)

    def target(self, name: str) -> Target | None:
        """The target called ``name``; None when there is none."""
        found = self.targets.get(name)
        if found is None:
            return None
        return Target(
            name=name,
            scope=found.get("scope") or self.scope,
            **{k: found.get(k) for k in ("method", "resource", "audience", "resource_server")},
            scopes=tuple(found.get("scopes", ())),
        )


def _target(name: Any, target: Any) -> dict[str, Any]:
    """One entry of ``targets``, checked, with its method filled in."""
    where = f"UpstreamTokens.targets[{name!r}]"
    if not isinstance(name, str) or not name or not name.isprintable() or len(name) > 255:
        raise TraitError(f"{where}: a target's name is a printable string")
    if not isinstance(target, dict) or set(target) - set(_FIELDS):
        raise TraitError(f"{where} must be a dict of {', '.join(_FIELDS)}")
    method = target.get("method") or ("exchange" if target.get("audience") else "resource")
    if method not in METHODS:
        raise TraitError(f"{where}['method'] must be one of {', '.join(METHODS)}")
    for field in ("resource", "audience", "resource_server", "scope"):
        value = target.get(field)
        if value is not None and not (isinstance(value, str) and value and value.isprintable()):
            raise TraitError(f"{where}[{field!r}] must be a non-empty string")
    if not any(target.get(field) for field in _NEEDS[method]):
        raise TraitError(f"{where}: method {method!r} needs {' or '.join(_NEEDS[method])}")
    scope = target.get("scope")
    if scope is not None and not scope.startswith("custom:"):
        raise TraitError(f"{where}['scope'] must be a custom scope (custom:...)")
    scopes = target.get("scopes", [])
    if not isinstance(scopes, list | tuple) or not all(
        isinstance(s, str) and s and " " not in s and s.isprintable() for s in scopes
    ):
        raise TraitError(f"{where}['scopes'] must be a list of scopes (strings without spaces)")
    return {**target, "method": method, "scopes": sorted(set(scopes))}
