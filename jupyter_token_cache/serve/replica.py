"""One replica of the token-cache service: its settings, its parts, its Tornado application."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.parse
from collections import Counter
from typing import Any

from tornado import web
from traitlets import CaselessStrEnum, Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from ..services.auth import CachedHubAuth, tls_verify
from ..services.checker import HubUnavailable
from . import handlers
from .edge import ASK_HUB, REFUSE, EdgeCache, EdgeTokens
from .hub import HubForwarder


def _service_url() -> urllib.parse.ParseResult:
    return urllib.parse.urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))


class TokenCacheReplica(LoggingConfigurable):
    """Settings of ``jupyter-token-cache serve`` (``c.TokenCacheReplica``).

    Where the hub is and the service's own token are ``HubAuth``'s settings
    (``c.HubAuth.api_url``, ``c.HubAuth.api_token``), which default to the
    ``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN`` a managed service gets; caller
    checks are ``c.CachedHubAuth``'s, the edge cache's storage and policy
    ``c.TokenCache``'s (or ``c.EdgeCache``'s).
    """

    ip = Unicode(
        config=True,
        help="""Address to listen on. Default: the host of $JUPYTERHUB_SERVICE_URL (what
        the hub gives a managed service), else 127.0.0.1.""",
    )
    port = Integer(
        config=True,
        help="""Port to listen on. Default: the port of $JUPYTERHUB_SERVICE_URL, else
        10102.""",
    )
    prefix = Unicode(
        config=True,
        help="""URL prefix of the routes (notebook, internal, introspect, exchange,
        stats, tokens, reset and its handle).
        Default: $JUPYTERHUB_SERVICE_PREFIX, else /services/token-cache/. Behind the
        hub's proxy this is where the service's entry routes it.""",
    )
    on_stream_cut = CaselessStrEnum(
        [ASK_HUB, REFUSE],
        ASK_HUB,
        config=True,
        help="""What a request the edge cache cannot answer does while the hub's event
        stream is cut (entries cached before the cut follow
        CachedHubAuth.on_disconnect). "hub": ask the hub, as a miss does. "refuse":
        answer 503 until the stream is back, so that a cut does not send every request
        to the hub at once.""",
    )
    hub_timeout = Float(
        10.0,
        config=True,
        help="""Seconds a request passed to the hub (a miss, an admin route) may take;
        past it the caller gets 503.""",
    )

    start_timeout = Float(
        60.0,
        config=True,
        help="""Seconds to wait at start-up for the hub to answer (a replica may start
        before the hub, or with it as a managed service) before giving up.""",
    )

    @default("ip")
    def _ip_default(self) -> str:
        return _service_url().hostname or "127.0.0.1"

    @default("port")
    def _port_default(self) -> int:
        return _service_url().port or 10102

    @default("prefix")
    def _prefix_default(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/token-cache/")

    auth: CachedHubAuth
    edge: EdgeTokens
    hub: HubForwarder
    #: Introspections answered here: requests, active, inactive.
    introspections: Counter[str]

    async def start(self) -> web.Application:
        """Check the service's scopes, follow the hub's events, and build the application.

        Raises RuntimeError naming what is missing (a scope, the hub's URL or token), and
        :class:`~jupyter_token_cache.cache.engine.TokenCacheConfigError` for cache
        settings that cannot work.
        """
        self.introspections = Counter()
        cache = EdgeCache(parent=self)
        cache.store  # noqa: B018 - bad cache settings stop the replica now, not on a request
        self.auth = CachedHubAuth(parent=self)
        if not self.auth.api_url or not self.auth.api_token:
            raise RuntimeError(
                "The hub's API URL and this service's token are needed: set "
                "JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN (a managed service has them)"
            )
        await self._wait_for_hub()
        self.hub = HubForwarder(
            self.auth.api_url, timeout=self.hub_timeout, log=self.log, verify=tls_verify(self.auth)
        )
        self.edge = EdgeTokens(
            cache=cache,
            state=self.auth.revocations,
            hub=self.hub,
            on_stream_cut=self.on_stream_cut,
            log=self.log,
        )
        return self.application()

    async def _wait_for_hub(self) -> None:
        """``CachedHubAuth.start``, retried while the hub is not up yet (started together),
        then the event stream's first connection."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                await self.auth.start()
                break
            except HubUnavailable as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{e} (waited {self.start_timeout:g} s)") from None
                self.log.info("Waiting for the hub: %s", e)
                await asyncio.sleep(0.5)
        # the first stream attempt may have failed while the hub was starting: wait for the
        # stream, so that no request is judged (or refused) without it
        while not self.auth.revocations.connected:
            if time.monotonic() > deadline:
                self.log.warning("The hub's event stream is not connected yet; starting anyway")
                return
            await asyncio.sleep(0.05)

    def application(self) -> web.Application:
        prefix = "/" + self.prefix.strip("/") + "/"
        if prefix == "//":
            prefix = "/"
        routes: list[Any] = [
            (prefix + "notebook", handlers.NotebookTokenHandler),
            (prefix + "internal", handlers.InternalTokenHandler),
            (prefix + "introspect", handlers.IntrospectHandler),
            (prefix + "exchange", handlers.ExchangeHandler),
            (prefix + "upstream", handlers.UpstreamHandler),
            (prefix + "stats", handlers.StatsHandler),
            (prefix + "tokens", handlers.TokensHandler),
            (prefix + "health", handlers.HealthHandler),
            (prefix + "users/([^/]+)", handlers.ResetHandler),
            (prefix + "resets/([^/]+)", handlers.ResetStatusHandler),
            (prefix.rstrip("/") + "/?", handlers.ResetHandler),
        ]
        return web.Application(
            routes,
            default_handler_class=handlers.NotFoundHandler,
            token_cache_replica=self,
            token_cache_prefix=prefix,
        )

    async def close(self) -> None:
        self.auth.close_token_checks()
        await self.hub.close()
        await self.edge.cache.close()
