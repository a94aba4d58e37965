"""POST /hub/api/token-cache/exchange: an upstream access token in, a hub token out (RFC 8693).

Notes
-----
The subject token is the only credential: the route needs no hub token or cookie. The
identity provider verifies it (:mod:`jupyter_token_cache.upstream`, cached); then the
hub's own authenticator decides, with the very checks its login page runs
(``normalize_username``, ``validate_username``, ``check_blocked_users``, ``allow_all``
/ ``check_allowed``, groups synced under ``manage_groups``), so an exchange admits
exactly the people a login admits. The token is minted by the token policy for the
upstream session (kind "upstream"), like every other token here: reused while good,
never outliving the upstream token, revoked when the provider calls that token
inactive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyterhub import roles
from jupyterhub.utils import maybe_future
from tornado import web

from ..rest import form_or_json, is_scope, rfc_error
from ..tokens.models import (
    Forbidden,
    InvalidRequest,
    IssuedToken,
    LifetimeUnavailable,
    TokenRequestError,
    UnknownService,
)
from ..upstream.exchange import ExchangeError, Identity, UpstreamVerifier
from .handlers import TokenCacheAPIHandler

if TYPE_CHECKING:
    from jupyterhub.user import User


GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a type name
FIELDS = ("grant_type", "subject_token", "subject_token_type", "requested_token_type",
          "scope", "resource", "audience")  # fmt: skip
#: Longest subject token looked at (JWTs with many claims run to a few kilobytes).
MAX_TOKEN = 16_384
MAX_FIELD = 2_048


class ExchangeHandler(TokenCacheAPIHandler):
    """RFC 8693 token exchange: ``subject_token`` (an upstream access token) for a hub token."""

    def check_xsrf_cookie(self) -> None:
        """No cookie is a credential here: the subject token in the body is the only one."""

    async def post(self) -> None:
        exchange: UpstreamVerifier | None = getattr(self.extension, "token_exchange", None)
        if exchange is None:
            raise web.HTTPError(404, "Token exchange is not configured (c.TokenExchange.issuer)")
        params = self._params()
        try:
            identity = await exchange.identify(params["subject_token"])
        except ExchangeError as e:
            if e.ended_session is not None:
                await self._revoke(*e.ended_session)
            rfc_error(self, e.error, e.description, e.status)
        user = await self._admit(identity)
        try:
            issued = await self._issue(user, identity, params)
        except (UnknownService, LifetimeUnavailable, InvalidRequest, Forbidden) as e:
            rfc_error(self, *_rfc(e))
        except TokenRequestError as e:  # any other refusal of the policy
            rfc_error(self, "invalid_request", e.message, e.status)
        self.write_json(response(issued))

    def _params(self) -> dict[str, Any]:
        """The request's parameters, each checked (see :func:`~jupyter_token_cache.rest.form_or_json`).

        Nothing missing or malformed falls back to a default: no ``grant_type`` is
        ``invalid_request`` (RFC 6749 section 5.2), a ``scope`` naming something that
        cannot be a scope, or nothing, is ``invalid_scope``.
        """
        params = form_or_json(self, FIELDS)
        for name, value in params.items():
            limit = MAX_TOKEN if name == "subject_token" else MAX_FIELD
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= limit):
                rfc_error(self, "invalid_request", f"{name} must be a non-empty string")
        if params["grant_type"] is None:
            rfc_error(self, "invalid_request", f"grant_type is required: {GRANT_TYPE}")
        if params["grant_type"] != GRANT_TYPE:
            rfc_error(self, "unsupported_grant_type", f"grant_type must be {GRANT_TYPE}")
        if params["scope"] is not None:
            scopes = params["scope"].split(" ")
            if not all(map(is_scope, scopes)):
                rfc_error(self, "invalid_scope", "scope must be scopes separated by single spaces")
        if params["subject_token"] is None:
            rfc_error(self, "invalid_request", "subject_token is required")
        if params["subject_token_type"] != ACCESS_TOKEN:
            rfc_error(self, "invalid_request", f"subject_token_type must be {ACCESS_TOKEN}")
        if params["requested_token_type"] not in (None, ACCESS_TOKEN):
            rfc_error(self, "invalid_request", f"requested_token_type must be {ACCESS_TOKEN}")
        resource, audience = params["resource"], params["audience"]
        if resource and audience and resource != audience:
            rfc_error(self, "invalid_target", "resource and audience name different services")
        params["service"] = resource or audience
        return params

    async def _admit(self, identity: Identity) -> User:
        """The hub user the login page would admit for ``identity``; invalid_grant if none."""
        auth = self.authenticator
        settings = self.extension.token_exchange_settings
        name = auth.normalize_username(identity.username)
        groups = list(identity.groups) if identity.groups is not None else None
        claims: dict[str, Any] = {settings.username_claim: identity.username}
        if settings.groups_claim and groups is not None:
            claims[settings.groups_claim] = groups
        authenticated = {"name": name, "groups": groups, "admin": None,
                         "auth_state": {"oauth_user": claims}, "user_info": None}  # fmt: skip
        if not auth.validate_username(name):
            rfc_error(self, "invalid_grant", "The subject token's user is not a valid hub username")
        try:
            admitted = await maybe_future(auth.check_blocked_users(name, authenticated))
            if admitted and not auth.allow_all:
                admitted = await maybe_future(auth.check_allowed(name, authenticated))
        except web.HTTPError:  # authenticators may refuse with a page of their own
            admitted = False
        if not admitted:
            self.log.warning("Token exchange: user %s is not allowed by the authenticator", name)
            rfc_error(self, "invalid_grant", "The subject token's user may not use this hub")
        user = self.find_user(name)
        if user is None:
            if not settings.auto_create_users:
                rfc_error(self, "invalid_grant", "The subject token's user has no hub account")
            user = self.user_from_username(name)
            await maybe_future(auth.add_user(user))
            roles.assign_default_roles(self.db, entity=user)
            self.log.info("Token exchange: created user %s", name)
        if auth.manage_groups and groups is not None:
            user.sync_groups(groups)
        self.db.commit()  # a new user, its roles, its groups (a no-op when none changed)
        return user

    async def _issue(self, user: User, identity: Identity, params: dict[str, Any]) -> IssuedToken:
        service = self.extension.token_service
        minter = self.extension.token_minter
        held = minter.user_scopes(user.name)
        scope = params["scope"]
        requested = scope.split() if scope else None
        sessions = self.extension.token_sessions
        session = sessions.for_upstream(user.name, identity.session, identity.expires_at, held)
        if params["service"] is not None:
            return await service.internal_token(session, params["service"], requested)
        if requested is not None:
            wanted = minter.expand(requested, user.name)
            allowed = minter.expand(service.settings.notebook_scopes, user.name)
            if minter.intersect(wanted, allowed) != wanted:
                raise Forbidden("scope asks for more than a notebook token may hold")
            narrower = minter.intersect(wanted, held)
            session = sessions.for_upstream(
                user.name, identity.session, identity.expires_at, narrower
            )
        return await service.notebook_token(session)

    async def _revoke(self, session_ref: str, claimed: str) -> None:
        """Delete the hub tokens minted for an upstream session the provider has ended."""
        service = self.extension.token_service
        user = self.authenticator.normalize_username(claimed)
        count = await service.minter.revoke_minted(
            user=user, session_ref=session_ref, reason="parent-revoked"
        )
        if count:
            self.log.info("Token exchange: revoked %i token(s) of an ended upstream session", count)


def _rfc(error: TokenRequestError) -> tuple[str, str, int]:
    """A policy refusal as an RFC 8693 error: its code, description and status."""
    if isinstance(error, UnknownService):
        return "invalid_target", error.message, 400
    if isinstance(error, LifetimeUnavailable):
        return "invalid_grant", error.message, 400
    return "invalid_scope", error.message, 400


def response(issued: IssuedToken) -> dict[str, Any]:
    """RFC 8693 section 2.2.1's answer, with the fields of this project's token answers."""
    return {
        **issued.model(),  # with expires_in, as RFC 8693 asks
        "access_token": issued.token,
        "issued_token_type": ACCESS_TOKEN,
        "token_type": "bearer",
        "scope": " ".join(issued.scopes),
    }
