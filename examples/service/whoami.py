"""A JupyterHub service that checks every request's token with CachedHubAuth.

Run by the hub (see examples/demo_config.py, and docs/services.md): it listens where
$JUPYTERHUB_SERVICE_URL says and answers, at /services/whoami/, the model of the user
whose token (or OAuth cookie) came with the request. Its handler is a JupyterHub
``HubAuthenticated`` one with ``CachedHubAuthenticated`` in its place, which checks
tokens on the service's own event loop: a cached token is answered at once even while
other requests wait for the hub.

    GET /services/whoami/          the caller's model (401/403 without a usable token)
    GET /services/whoami/metrics   Prometheus metrics of the token checks
    GET /services/whoami/stats     the same counters as JSON (for the demo and tests)

``--plain`` uses JupyterHub's plain ``HubAuthenticated`` and ``HubAuth`` instead (to
compare them side by side), ``--synchronous`` plain ``HubAuthenticated`` with
``CachedHubAuth`` (the one-line change, whose checks wait on ``HubAuth``'s background
thread); other arguments are settings, e.g. ``--CachedHubAuth.on_disconnect=clear`` or
``--AnswerCache.backend=redis``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from typing import Any
from urllib.parse import urlparse

from jupyterhub.services.auth import HubAuth, HubAuthenticated
from jupyterhub.utils import url_path_join
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado import web
from tornado.log import enable_pretty_logging
from traitlets.config.loader import KVArgParseConfigLoader

from jupyter_token_cache.services import CachedHubAuth, CachedHubAuthenticated


class JSONErrors(web.RequestHandler):
    """Errors as JSON, as JupyterHub's API writes them (a 503 while the hub is away)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))


class Answer:
    """The caller's model, as the hub describes it (put first in a handler's bases)."""

    hub_auth: HubAuth

    @web.authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.get_current_user(), sort_keys=True))

    def get_login_url(self) -> str:
        """Tokens only: no redirect to the hub's login page.

        Tornado asks for the login URL whenever ``get_current_user`` found no user it
        allows: without a usable token (401), and for a valid token that lacks the
        service's access scope, which JupyterHub answers 403 by replacing ``redirect``. So
        a token the hub knows is told 403 here too (its check is cached per request).
        """
        model = self.hub_auth.get_user(self)
        if model:
            kind, name = model.get("kind", "user"), model.get("name")
            raise web.HTTPError(403, f"{kind} {name} is not allowed.")
        raise web.HTTPError(401, "A token is required")


class WhoAmI(Answer, CachedHubAuthenticated, JSONErrors):
    """The example: checks on the service's own event loop."""


class SyncWhoAmI(Answer, HubAuthenticated, JSONErrors):
    """JupyterHub's own HubAuthenticated (``--plain``, ``--synchronous``): to compare."""


class Metrics(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest())


class Stats(JSONErrors):
    def get(self) -> None:
        auth = self.settings["hub_auth"]
        stats = auth.token_check_stats() if isinstance(auth, CachedHubAuth) else {}
        self.finish(stats)


def make_app(hub_auth: HubAuth, handler: type[web.RequestHandler] = WhoAmI) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    return web.Application(
        [
            (prefix, handler, {}),
            (url_path_join(prefix, "metrics"), Metrics),
            (url_path_join(prefix, "stats"), Stats),
        ],
        hub_auth=hub_auth,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", action="store_true", help="use JupyterHub's plain HubAuth")
    parser.add_argument(
        "--synchronous", action="store_true", help="CachedHubAuth on HubAuthenticated's own path"
    )
    args, settings = parser.parse_known_args()
    enable_pretty_logging()
    handler: Any = SyncWhoAmI if args.plain or args.synchronous else WhoAmI
    if args.synchronous:
        SyncWhoAmI.hub_auth_class = CachedHubAuth
    auth = handler.hub_auth_class.instance(config=KVArgParseConfigLoader(settings).load_config())
    if isinstance(auth, CachedHubAuth):
        await auth.start()  # a missing scope stops the service here, with its name
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    make_app(auth, handler).listen(url.port or 80, url.hostname or "127.0.0.1")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    if isinstance(auth, CachedHubAuth):
        auth.close_token_checks()


if __name__ == "__main__":
    asyncio.run(main())
