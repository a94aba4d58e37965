"""TokenCacheMixin: the token cache on any JupyterHub authenticator."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from typing import Any

from jupyterhub import orm
from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LogoutHandler
from jupyterhub.utils import maybe_future
from tornado.ioloop import PeriodicCallback
from tornado.web import RequestHandler
from traitlets.utils.importstring import import_item

from .. import metrics
from ..client import API_URL_ENV
from ..scopes import held_by_users, scope_error
from ..times import iso8601
from ..tokens.events import (
    GROUP_CHANGED,
    REVOKED,
    SCOPES_CHANGED,
    SERVICE_CHANGED,
    USER_CHANGED,
    Event,
)
from ..tokens.minter import MintedRow
from ..tokens.models import TokenRequestError
from ..tokens.policy import TokenCache
from ..tokens.service import TokenService
from ..upstream import TokenExchange, UpstreamVerifier, exchange_verifier
from ..upstream.service import UpstreamTokenService
from .collector import freeze_gc
from .events import EventBroker
from .exchange import ExchangeHandler
from .handlers import (
    EventsHandler,
    InternalTokenHandler,
    NotebookTokenHandler,
    NotFoundHandler,
    ResetHandler,
    ResetStatusHandler,
    StatsHandler,
    TokensHandler,
)
from .introspect import IntrospectHandler
from .lineage import BATCH, create_tables
from .minter import OrmMinter
from .observer import GROUP, SERVICE, USER, Change, DatabaseObserver, EndedToken, pause
from .page import AdminPageHandler, page_routes
from .resets import Resets
from .sessions import SessionResolver
from .upstream_sessions import UpstreamSessionTable
from .upstream_tokens import (
    WAITED,
    UpstreamTokenHandler,
    end_in_time,
    ending_on_logout,
    upstream_service,
)
from .watch import WatchedTokens

#: Where the REST API lives, under the hub prefix (/hub).
API_PREFIX = "/api/token-cache"


class TokenCacheMixin:
    """Mint, cache and serve notebook and internal tokens; put it before any authenticator.

    ``class MyAuthenticator(TokenCacheMixin, GitHubOAuthenticator)``, or
    ``with_token_cache("github")``. Settings are read from ``c.TokenCache``.

    Notes
    -----
    An authenticator is the one extension point every hub has that can add API
    handlers (``get_handlers``) and see each server start and stop
    (``pre_spawn_start`` / ``post_spawn_stop``), which is all this needs: a notebook
    token is minted for each server's session when it starts and placed in its
    environment, and the tokens minted for that session are deleted when it stops.
    Handler classes are class attributes so a subclass can swap one.
    """

    token_cache_class: type[TokenCache] = TokenCache
    notebook_handler: type[RequestHandler] = NotebookTokenHandler
    internal_handler: type[RequestHandler] = InternalTokenHandler
    stats_handler: type[RequestHandler] = StatsHandler
    tokens_handler: type[RequestHandler] = TokensHandler
    reset_handler: type[RequestHandler] = ResetHandler
    reset_status_handler: type[RequestHandler] = ResetStatusHandler
    events_handler: type[RequestHandler] = EventsHandler
    introspect_handler: type[RequestHandler] = IntrospectHandler
    exchange_handler: type[RequestHandler] = ExchangeHandler
    upstream_handler: type[RequestHandler] = UpstreamTokenHandler
    page_handler: type[RequestHandler] = AdminPageHandler

    token_cache: TokenCache
    token_service: TokenService
    token_sessions: SessionResolver
    token_events: EventBroker
    token_observer: DatabaseObserver
    #: Resets running or recently ended (their handles).
    token_resets: Resets
    token_minter: OrmMinter
    #: Tokens described to caches outside the hub (introspection), watched for raw deletes.
    token_watch: WatchedTokens
    #: The token exchange (None unless c.TokenExchange.issuer is set) and its settings.
    token_exchange: UpstreamVerifier | None
    token_exchange_settings: TokenExchange
    #: The user's identity-provider tokens (None unless c.UpstreamTokens.enabled).
    token_upstream: UpstreamTokenService | None
    #: Introspection requests and their answers since the hub started (the stats route).
    token_introspections: dict[str, int]

    def get_handlers(self, app: Any) -> list[tuple[str, type[RequestHandler]]]:
        handlers = list(super().get_handlers(app))  # type: ignore[misc]
        self.start_token_cache(app)
        if self.token_upstream is not None:  # logging out ends the upstream session
            logout = next((h for path, h in handlers if path == "/logout"), LogoutHandler)
            handlers = [h for h in handlers if h[0] != "/logout"]
            handlers.append(("/logout", ending_on_logout(logout)))
        return handlers + [
            (f"{API_PREFIX}/notebook", self.notebook_handler),
            (f"{API_PREFIX}/internal", self.internal_handler),
            (f"{API_PREFIX}/stats", self.stats_handler),
            (f"{API_PREFIX}/tokens", self.tokens_handler),
            (f"{API_PREFIX}/events", self.events_handler),
            (f"{API_PREFIX}/introspect", self.introspect_handler),
            (f"{API_PREFIX}/exchange", self.exchange_handler),
            (f"{API_PREFIX}/upstream", self.upstream_handler),
            (f"{API_PREFIX}/users/([^/]+)", self.reset_handler),
            (f"{API_PREFIX}/resets/([^/]+)", self.reset_status_handler),
            (API_PREFIX, self.reset_handler),
            (f"{API_PREFIX}/.*", NotFoundHandler),
            *page_routes(app, self.page_handler),
        ]

    def start_token_cache(self, app: Any) -> None:
        """Build the cache, policy, minter, observer and event broker; a bad setting stops the hub here."""
        self.token_cache = self.token_cache_class(parent=self)
        cap = getattr(app, "token_expires_in_max_seconds", 0) or 0
        unheld = None
        if not getattr(self, "manage_roles", False):  # else the authenticator gives roles
            extra = app.extra_user_scopes if app.has_trait("extra_user_scopes") else None  # 6+
            unheld = held_by_users(app.load_roles, extra_user_scopes=extra)
        for problem in self.token_cache.problems(scope_error, max_lifetime=cap, unheld=unheld):
            self.log.warning("%s: %s; %s", *problem)  # type: ignore[attr-defined]
        create_tables(app.db.get_bind())
        self.token_ended_logins = EndedLogins()
        minter = self.token_minter = OrmMinter(
            app.db, server_active=_server_active(app), ended_logins=self.token_ended_logins
        )
        self.token_introspections = {"requests": 0, "active": 0, "inactive": 0}
        cache = self.token_cache
        self.token_events = EventBroker(
            buffer_size=cache.event_buffer_size,
            queue_size=cache.event_queue_size,
            eventlog=getattr(app, "eventlog", None),
            cache=cache,
            log=self.log,  # type: ignore[attr-defined]
        )
        self.token_service = TokenService(
            settings=cache,
            minter=minter,
            events=self.token_events,
            max_lifetime=getattr(app, "token_expires_in_max_seconds", 0) or 0,
            log=self.log,  # type: ignore[attr-defined]
        )
        self.token_sessions = SessionResolver(service=self.token_service, minter=minter)
        self.token_observer = DatabaseObserver(app.db, self.token_ends_committed, log=self.log)  # type: ignore[attr-defined]
        self.token_observer.install()
        # JupyterHub purged expired tokens before the observer was installed: sweep now
        self._token_first_sweep = asyncio.get_running_loop().create_task(
            self.token_observer.sweep(), name="token-cache-sweep"
        )
        self.token_watch = WatchedTokens(
            horizon=cache.answer_horizon,
            size=cache.watched_tokens,
            publish=self.token_events.publish,
        )
        if cache.sweep_interval > 0:
            sweep = PeriodicCallback(self.token_observer.sweep, cache.sweep_interval * 1000)
            sweep.start()
            app._periodic_callbacks["token_cache_sweep"] = sweep
            watch = PeriodicCallback(
                lambda: self.token_watch.check(app.db), cache.sweep_interval * 1000
            )
            watch.start()
            app._periodic_callbacks["token_cache_watch"] = watch
        self.token_exchange_settings = TokenExchange(parent=self)
        self.token_exchange = exchange_verifier(
            self.token_exchange_settings,
            self.log,  # type: ignore[attr-defined]
            sessions=self.token_upstream_sessions(app),
        )
        self.token_upstream = upstream_service(self, cache, self.token_events, self.log)  # type: ignore[attr-defined]

        async def end_upstream(name: str | None) -> None:  # a reset with revoke ends it too
            if name is None:
                async for orm_user in users_with_auth_state(app.db):
                    await self.token_upstream_end(app.users[orm_user], "admin-reset")
                return
            orm_user = orm.User.find(app.db, name)
            if orm_user is not None:  # deleted meanwhile: its deletion ended it
                await self.token_upstream_end(app.users[orm_user], "admin-reset")

        self.token_resets = Resets(
            self.token_service,
            app.db,
            log=self.log,  # type: ignore[attr-defined]
            ending=end_upstream if self.token_upstream is not None else None,
        )
        self.token_resets.resume()
        metrics.register()
        if cache.freeze_gc:
            freeze_gc()
        self.log.info(  # type: ignore[attr-defined]
            "Token cache on the %s backend; REST API at %s%s",
            cache.backend,
            app.hub_prefix.rstrip("/"),
            API_PREFIX,
        )

    def token_upstream_sessions(self, app: Any) -> UpstreamSessionTable:
        """Where the token exchange records upstream sessions: the hub database."""
        cache = self.token_cache
        lifetimes = [cache.notebook_lifetime, *(p["lifetime"] for p in cache.services.values())]
        return UpstreamSessionTable(app.db, keep=max(lifetimes))

    def token_ends_committed(self, ended: list[EndedToken], changes: list[Change]) -> None:
        """Tokens ended and powers changed in a commit: evict their entries, then tell everyone."""
        self.token_service.forget(
            MintedRow(ref=e.ref, user=e.owner, scopes=e.scopes, lineage=e.lineage)
            for e in ended
            if e.lineage is not None and e.owner is not None
        )
        for change in changes:
            if change.kind == USER and change.reason in ("renamed", "deleted"):
                self.token_service.forget_user(change.previous_name or change.name)
        for e in ended:
            if e.reason == "logout" and e.session_id:
                self.token_ended_logins.add(e.session_id)
            self.token_watch.forget(e.row_id, e.ref.fp)  # its end is told here, once
        self.token_events.publish(
            [
                *(
                    Event(
                        REVOKED,
                        user=e.owner,
                        token_ids=(e.ref.id,),
                        kind=e.kind,
                        service=e.lineage.service if e.lineage else None,
                        reason=e.reason,
                        created=iso8601(e.created),
                    )
                    for e in ended
                ),
                *(change_event(c) for c in changes),
            ]
        )

    async def authenticate(self, handler: Any, data: Any = None) -> Any:
        """The authenticator's login; its auth state names a new upstream session (``c.UpstreamTokens``)."""
        model = await maybe_future(super().authenticate(handler, data))  # type: ignore[misc]
        upstream = getattr(self, "token_upstream", None)
        if upstream is not None and isinstance(model, dict):
            if isinstance(model.get("auth_state"), dict):
                model = {**model, "auth_state": upstream.stamp_login(model["auth_state"])}
        return model

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        """The authenticator's refresh, run once per user at a time with the upstream token
        route's refreshes, so the two never present one refresh token twice."""
        refresh = super().refresh_user  # type: ignore[misc]
        upstream = getattr(self, "token_upstream", None)
        if upstream is None:
            return await maybe_future(refresh(user, handler, **kwargs))
        started = time.monotonic()
        try:
            return await upstream.refresh_user(
                user, lambda: maybe_future(refresh(user, handler, **kwargs))
            )
        finally:  # the upstream route's timeout counts this wait too
            if handler is not None:
                setattr(handler, WAITED, time.monotonic() - started)

    async def delete_user(self, user: Any) -> None:
        """End the user's upstream session (revoking its tokens), then the authenticator's hook."""
        await self.token_upstream_end(user, "user-deleted")
        await maybe_future(super().delete_user(user))  # type: ignore[misc]

    async def token_upstream_end(self, user: Any, reason: str) -> None:
        """End ``user``'s upstream session, if upstream tokens are on (logout, deletion, reset)."""
        upstream = getattr(self, "token_upstream", None)
        if upstream is not None and user is not None:
            await end_in_time(upstream, user, reason, self.log)  # type: ignore[attr-defined]

    async def pre_spawn_start(self, user: Any, spawner: Any) -> None:
        """Mint the server session's notebook token and put it in the server's environment."""
        await maybe_future(super().pre_spawn_start(user, spawner))  # type: ignore[misc]
        if self.token_cache.api_url:  # the replicated mode: the client's way to the service
            spawner.environment = {**spawner.environment, API_URL_ENV: self.token_cache.api_url}
        variable = self.token_cache.notebook_token_env
        session = self.token_sessions.for_server(user, spawner) if variable else None
        if session is None:
            return
        try:
            issued = await self.token_service.notebook_token(session)
        except TokenRequestError as e:  # the server still starts, without the variable
            self.log.warning(  # type: ignore[attr-defined]
                "No notebook token for %s: %s", spawner._log_name, e.message
            )
            return
        spawner.environment = {**spawner.environment, variable: issued.token}

    async def post_spawn_stop(self, user: Any, spawner: Any) -> None:
        """Delete from the hub (and evict) the tokens minted for the stopped server's session."""
        await maybe_future(super().post_spawn_stop(user, spawner))  # type: ignore[misc]
        count = await self.token_service.revoke_server(user.name, spawner.name)
        if count:
            self.log.info(  # type: ignore[attr-defined]
                "Revoked %i token(s) minted for %s", count, spawner._log_name
            )


def change_event(change: Change) -> Event:
    """The event of a change of what tokens may do (see ``observer._changes``)."""
    if change.kind == USER:
        return Event(
            USER_CHANGED, user=change.name, reason=change.reason, previous_name=change.previous_name
        )
    if change.kind == GROUP:
        return Event(
            GROUP_CHANGED,
            group=change.name,
            reason=change.reason,
            previous_name=change.previous_name,
        )
    if change.kind == SERVICE:
        return Event(SERVICE_CHANGED, service=change.name, reason=change.reason)
    return Event(SCOPES_CHANGED, reason=change.reason)


async def users_with_auth_state(db: Any) -> AsyncIterator[Any]:
    """The users who have an auth state (an upstream session may live in it), read in key
    order :data:`~jupyter_token_cache.hub.lineage.BATCH` at a time, the event loop free
    between reads (a reset of everyone ends each one's session)."""
    after = 0
    while True:
        batch = (
            db.query(orm.User)
            .filter(orm.User.id > after, orm.User.encrypted_auth_state.is_not(None))
            .order_by(orm.User.id)
            .limit(BATCH)
            .all()
        )
        if not batch:
            return
        for user in batch:
            yield user
        after = batch[-1].id
        await pause()


class EndedLogins:
    """Login sessions seen logging out, so that a mint racing the logout is refused (bounded)."""

    def __init__(self, size: int = 100_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def add(self, session_id: str) -> None:
        self._ids[session_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._ids


def _server_active(app: Any) -> Any:
    """Whether a user's server runs and is not stopping, from the hub's own spawner state."""

    def active(user: str, server: str) -> bool:
        try:
            spawner = app.users[user].spawners.get(server)
        except KeyError:
            return False
        return spawner is not None and spawner.active and spawner.pending != "stop"

    return active


#: The pip package of each well-known authenticator entry-point name (what a name needs).
AUTHENTICATOR_PACKAGES = {
    **{
        name: "oauthenticator"
        for base in (
            "auth0",
            "azuread",
            "bitbucket",
            "cilogon",
            "generic-oauth",
            "github",
            "gitlab",
            "globus",
            "google",
            "openshift",
        )
        for name in (base, f"local-{base}")
    },
    "mediawiki": "oauthenticator",
    "ldap": "jupyterhub-ldapauthenticator",
    "ldapauthenticator": "jupyterhub-ldapauthenticator",
    "native": "jupyterhub-nativeauthenticator",
    "firstuse": "jupyterhub-firstuseauthenticator",
    "firstuseauthenticator": "jupyterhub-firstuseauthenticator",
    "tmp": "jupyterhub-tmpauthenticator",
}


class AuthenticatorNotFound(ImportError):
    """No installed authenticator answers to a name given to ``with_token_cache``.

    An ``ImportError``, as the failed import it replaces was; its message names the
    package the name needs (when it is a well-known one) and the entry points installed.
    """


def installed_authenticators() -> list[str]:
    """The ``jupyterhub.authenticators`` entry-point names installed here."""
    return sorted({e.name for e in entry_points(group="jupyterhub.authenticators")})


def authenticator_class(authenticator: str | type[Authenticator]) -> Any:
    """The class ``authenticator`` names, as JupyterHub resolves it: an entry-point name
    ("github"), an import path, or the class itself.

    A name that is neither an installed entry point nor importable raises
    :class:`AuthenticatorNotFound`, naming the package it needs and what is installed,
    rather than the bare ``No module named 'github'`` that importing the name gives.
    """
    if not isinstance(authenticator, str):
        return authenticator
    found = entry_points(group="jupyterhub.authenticators", name=authenticator)
    if found:
        return next(iter(found)).load()
    try:
        return import_item(authenticator)
    except ImportError as e:
        package = AUTHENTICATOR_PACKAGES.get(authenticator)
        if package:
            why = f"it is an entry point of the {package} package, which is not installed here"
        elif "." in authenticator:
            why = f"it does not import ({type(e).__name__}: {e})"
        else:
            why = "no installed package declares that entry point, and it is no import path"
        raise AuthenticatorNotFound(
            f"No authenticator {authenticator!r}: {why}. Installed authenticator entry "
            f"points: {', '.join(installed_authenticators()) or 'none'}"
            + (f". Install it: pip install {package}" if package else "")
        ) from None


def with_token_cache(authenticator: str | type[Authenticator]) -> type[Authenticator]:
    """``authenticator`` (an entry-point name such as "github", an import path or a class) with the token cache.

    For ``c.JupyterHub.authenticator_class = with_token_cache("github")``.
    """
    base = authenticator_class(authenticator)
    if not (isinstance(base, type) and issubclass(base, Authenticator)):
        raise TypeError(f"{authenticator!r} is not a JupyterHub Authenticator class")
    if issubclass(base, TokenCacheMixin):
        return base
    return type(f"TokenCache{base.__name__}", (TokenCacheMixin, base), {"__module__": __name__})
