"""TokenCacheMixin: the token cache on any JupyterHub authenticator."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from jupyterhub.auth import Authenticator
from jupyterhub.utils import maybe_future
from tornado.web import RequestHandler
from traitlets.utils.importstring import import_item

from .. import metrics
from ..tokens.lineage import Lineage
from ..tokens.models import TokenRequestError
from ..tokens.policy import TokenCache
from ..tokens.service import TokenService
from .handlers import InternalTokenHandler, NotebookTokenHandler, ResetHandler, StatsHandler
from .minter import OrmMinter
from .sessions import SessionResolver

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
    reset_handler: type[RequestHandler] = ResetHandler

    token_cache: TokenCache
    token_service: TokenService
    token_sessions: SessionResolver

    def get_handlers(self, app: Any) -> list[tuple[str, type[RequestHandler]]]:
        handlers = list(super().get_handlers(app))  # type: ignore[misc]
        self.start_token_cache(app)
        return handlers + [
            (f"{API_PREFIX}/notebook", self.notebook_handler),
            (f"{API_PREFIX}/internal", self.internal_handler),
            (f"{API_PREFIX}/stats", self.stats_handler),
            (f"{API_PREFIX}/users/([^/]+)", self.reset_handler),
            (API_PREFIX, self.reset_handler),
        ]

    def start_token_cache(self, app: Any) -> None:
        """Build the cache, policy and minter; a bad setting stops the hub here."""
        self.token_cache = self.token_cache_class(parent=self)  # type: ignore[call-arg]
        lineage = Lineage(app.cookie_secret)
        minter = OrmMinter(app.db)
        self.token_service = TokenService(
            settings=self.token_cache,
            minter=minter,
            lineage=lineage,
            max_lifetime=getattr(app, "token_expires_in_max_seconds", 0) or 0,
            log=self.log,  # type: ignore[attr-defined]
        )
        self.token_sessions = SessionResolver(lineage=lineage, minter=minter)
        metrics.register()
        self.log.info(  # type: ignore[attr-defined]
            "Token cache on the %s backend; REST API at %s%s",
            self.token_cache.backend,
            app.hub_prefix.rstrip("/"),
            API_PREFIX,
        )

    async def pre_spawn_start(self, user: Any, spawner: Any) -> None:
        """Mint the server session's notebook token and put it in the server's environment."""
        await maybe_future(super().pre_spawn_start(user, spawner))  # type: ignore[misc]
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


def with_token_cache(authenticator: str | type[Authenticator]) -> type[Authenticator]:
    """``authenticator`` (an entry-point name such as "github", an import path or a class) with the token cache.

    For ``c.JupyterHub.authenticator_class = with_token_cache("github")``.
    """
    if isinstance(authenticator, str):
        found = entry_points(group="jupyterhub.authenticators", name=authenticator)
        base = next(iter(found)).load() if found else import_item(authenticator)
    else:
        base = authenticator
    if not (isinstance(base, type) and issubclass(base, Authenticator)):
        raise TypeError(f"{authenticator!r} is not a JupyterHub Authenticator class")
    if issubclass(base, TokenCacheMixin):
        return base
    return type(f"TokenCache{base.__name__}", (TokenCacheMixin, base), {"__module__": __name__})
