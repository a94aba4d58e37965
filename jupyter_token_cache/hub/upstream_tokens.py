"""POST /hub/api/token-cache/upstream: the user's identity-provider tokens, from the auth state.

The hub side of :mod:`jupyter_token_cache.upstream.service`: the auth state of hub users
(:class:`HubAuthStates`), the route, the logout that ends the upstream session, and the
service built from ``c.UpstreamTokens`` and the authenticator's own client settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any

import httpx
from tornado import web

from ..rest import UPSTREAM_FIELDS, json_error, parse_body
from ..tokens.models import TokenRequestError
from ..upstream.auth_state import session_of
from ..upstream.grants import TokenEndpoint
from ..upstream.service import UpstreamTokenService
from ..upstream.targets import UpstreamTokens
from ..upstream.verify import Provider, ProviderUnavailable
from .handlers import TokenCacheAPIHandler

if TYPE_CHECKING:
    from ..tokens.events import EventSink
    from ..tokens.policy import TokenCache


class HubAuthStates:
    """:class:`~jupyter_token_cache.upstream.models.AuthStates` of hub users (``jupyterhub.user.User``).

    Notes
    -----
    A request needs only the name of the user's upstream session, which lives in the
    encrypted auth state. Decrypting it for each request would cost a thread hop and a
    Fernet decryption on the hit path, so the name is remembered with the encrypted value
    it was read from: the hub holds that value in memory, and any save (a login, a
    refresh, an end) replaces it, so a remembered name is used only while the very value
    it came from is still the user's. ``load`` reads the value from the database first:
    the refresh section must see what another hub process may have written.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._memo: OrderedDict[str, tuple[Any, str | None]] = OrderedDict()
        self._size = size

    def name(self, user: Any) -> str:
        return str(user.name)

    async def session(self, user: Any) -> str | None:
        encrypted = user.orm_user.encrypted_auth_state
        memo = self._memo.get(user.name)
        if memo is not None and (memo[0] is encrypted or memo[0] == encrypted):
            return memo[1]
        session = session_of(await user.get_auth_state())
        self._memo[user.name] = (encrypted, session)
        self._memo.move_to_end(user.name)
        if len(self._memo) > self._size:
            self._memo.popitem(last=False)
        return session

    async def load(self, user: Any) -> dict[str, Any] | None:
        user.db.expire(user.orm_user, ["encrypted_auth_state"])
        state = await user.get_auth_state()
        return state if isinstance(state, dict) else None

    async def save(self, user: Any, state: dict[str, Any]) -> None:
        await user.save_auth_state(state)  # encrypted, and committed


#: Where the mixin's refresh_user notes, on the request's handler, how long it waited.
WAITED = "_token_cache_refresh_waited"


class UpstreamTokenHandler(TokenCacheAPIHandler):
    """POST /hub/api/token-cache/upstream: ``{"target", "minimum_lifetime"}`` (both optional).

    The caller is a user's credential holding the upstream scope (or the target's): a
    server's token, a notebook token, the user's own. A refusal is JupyterHub's JSON
    error, with the OAuth code of the two a client acts on: ``login_required`` (401: the
    upstream session is over, log in again) and ``temporarily_unavailable`` (503: the
    provider is down or slow; cached tokens are still served while they meet the minimum).
    """

    async def post(self) -> None:
        upstream: UpstreamTokenService | None = getattr(self.extension, "token_upstream", None)
        try:  # the caller, then the body: refused in the order the other routes refuse
            session = self.extension.token_sessions.from_request(self)
            body = parse_body(self.request.body, UPSTREAM_FIELDS)
            if upstream is None:
                raise web.HTTPError(404, "Upstream tokens are not configured (c.UpstreamTokens)")
            await self.extension.token_service.check_session(session)
            issued = await upstream.token(
                self.current_user,
                session.scopes,
                target=body.get("target"),
                minimum_lifetime=body.get("minimum_lifetime"),
                waited=getattr(self, WAITED, 0.0),
            )
        except TokenRequestError as e:
            json_error(self, e.status, e.message, getattr(e, "error", None))
            return
        self.write_json(issued.model())


def ending_on_logout(base: type[web.RequestHandler]) -> type[web.RequestHandler]:
    """``base`` (the authenticator's logout handler, or JupyterHub's) that also ends the
    user's upstream session: their tokens are dropped and revoked, and the next request
    for one is told to log in again."""

    class UpstreamLogoutHandler(base):  # type: ignore[valid-type,misc]
        async def default_handle_logout(self) -> None:
            user = self.current_user
            if user is not None:
                await self.authenticator.token_upstream_end(user, "logout")
            await super().default_handle_logout()

    UpstreamLogoutHandler.__name__ = UpstreamLogoutHandler.__qualname__ = f"Upstream{base.__name__}"
    return UpstreamLogoutHandler


def upstream_service(
    authenticator: Any, cache: TokenCache, events: EventSink, log: logging.Logger
) -> UpstreamTokenService | None:
    """The service ``c.UpstreamTokens`` describes, or None when it is not enabled.

    Client id, secret and token endpoint default to the authenticator's own (an
    oauthenticator's ``client_id``, ``client_secret``, ``token_url``, and Globus'
    ``revocation_url``). A setting that cannot work stops the hub here.
    """
    settings = UpstreamTokens(parent=authenticator)
    if not settings.enabled:
        return None
    if not getattr(authenticator, "enable_auth_state", False):
        raise ValueError(
            "c.UpstreamTokens.enabled needs the authenticator's auth state: set "
            "c.Authenticator.enable_auth_state = True (and JUPYTERHUB_CRYPT_KEY)"
        )
    http = httpx.AsyncClient(timeout=settings.grant_timeout)
    provider = Provider(settings, http, log)
    fallback = {
        "token_endpoint": getattr(authenticator, "token_url", "") or "",
        "revocation_endpoint": getattr(authenticator, "revocation_url", "") or "",
    }

    async def endpoint(name: str) -> str:
        if getattr(settings, name) or settings.issuer:
            try:
                return await provider.endpoint(name, settings.timeout)
            except ProviderUnavailable:
                if name != "revocation_endpoint":
                    raise
                # none published (or none to be had now): the authenticator's, if any
        return fallback[name]

    counts: Counter[str] = Counter()
    return UpstreamTokenService(
        settings=settings,
        cache=cache,
        states=HubAuthStates(),
        endpoint=TokenEndpoint(
            http=http,
            endpoint=endpoint,
            client_id=settings.client_id or getattr(authenticator, "client_id", ""),
            client_secret=settings.client_secret or getattr(authenticator, "client_secret", ""),
            counts=counts,
            log=log,
        ),
        events=events,
        log=log,
    )


async def end_in_time(service: UpstreamTokenService, user: Any, reason: str, log: Any) -> None:
    """End ``user``'s upstream session, waiting ``timeout`` at most: a logout never hangs
    behind a refresh under way with a slow provider; the end then follows it."""
    task = asyncio.ensure_future(service.end(user, reason))
    _ENDING.add(task)
    task.add_done_callback(_ended)
    try:
        await asyncio.wait_for(asyncio.shield(task), service.settings.timeout)
    except asyncio.TimeoutError:
        log.warning("The upstream session of %s ends once the refresh under way ends", user.name)
    except TokenRequestError as e:
        log.warning("Could not end the upstream session of %s now: %s", user.name, e.message)


#: Ends still under way (held so that they are not garbage-collected mid-flight).
_ENDING: set[asyncio.Future[bool]] = set()


def _ended(task: asyncio.Future[bool]) -> None:
    _ENDING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger(__name__).warning(
            "Ending an upstream session failed: %r", task.exception()
        )
