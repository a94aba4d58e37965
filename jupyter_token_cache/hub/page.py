"""The admin page at /hub/token-cache: the hub's own page chrome around the REST routes.

The page is a template of the hub's (it extends ``page.html``) and one plain script;
the script reads the admin routes (stats, tokens) and calls the reset route with the
hub's XSRF token, as the hub's own pages call its API. Nothing comes from another
origin: the chart is inline SVG drawn by that script.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader
from jupyterhub.handlers import BaseHandler
from tornado import web

from ..scopes import ADMIN_SCOPE

HERE = Path(__file__).resolve().parent
#: Our templates: the page, and a ``page.html`` that adds the navigation link.
TEMPLATES = HERE / "templates"
#: The page's script and style sheet.
STATIC = HERE / "static"
#: Who may open the page (either scope; the REST routes accept the same two).
PAGE_SCOPES = frozenset({"admin:users", ADMIN_SCOPE})
#: What a visitor without them reads on the hub's error page (the REST routes say the same).
REFUSAL = f"Requires {' or '.join(sorted(PAGE_SCOPES))}"
#: Where the page lives, under the hub prefix (/hub).
PAGE_PATH = "/token-cache"


class AdminPageHandler(BaseHandler):  # type: ignore[misc]  # jupyterhub ships no type hints
    """GET /hub/token-cache: the admin page, for holders of admin:users or the token-cache admin scope.

    Notes
    -----
    ``needs_scope`` takes one scope, and this page accepts either of two, so the check
    is on ``expanded_scopes``; a refusal is an ``HTTPError(403)``, which the hub
    renders with its own error page (navigation bar included): "403 : Forbidden" and
    the scopes it requires, on JupyterHub 5 and 6 alike (5 shows a reason in place of
    the message, so the message also goes in ``jupyterhub_message``, which both show).
    ``@web.authenticated`` sends a visitor who is not logged in to the hub's login page
    and back.
    """

    @web.authenticated
    async def get(self) -> None:
        if not PAGE_SCOPES & set(self.expanded_scopes):
            refusal = web.HTTPError(403, REFUSAL, reason="Forbidden")
            refusal.jupyterhub_message = REFUSAL  # type: ignore[attr-defined]  # read by both
            raise refusal
        html = await self.render_template(
            "token-cache.html",
            token_cache_api=f"{self.hub.base_url}api/token-cache",
            token_cache_static={
                name: static_url(self.hub.base_url, name)
                for name in ("token-cache.js", "token-cache.css")
            },
        )
        self.set_header("Cache-Control", "no-store")
        self.finish(html)


class PageStaticHandler(web.StaticFileHandler):
    """The page's script and style sheet, cached for good when asked for by version.

    Notes
    -----
    Tornado types them by extension (``text/css``, ``text/javascript``) and, for a
    URL carrying ``?v=<content hash>`` (what the page links to), lets browsers keep them
    for a year; a new release has a new hash, so there is no stale script to clear.
    """

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")


def static_url(base_url: str, name: str) -> str:
    """The versioned URL of one of the page's static files."""
    version = PageStaticHandler.get_version({"static_path": str(STATIC)}, name)
    return f"{base_url}token-cache/static/{name}?v={version}"


def page_routes(app: Any, page: type[web.RequestHandler]) -> list[tuple[Any, ...]]:
    """Routes (under the hub prefix) for ``page`` and its static files; adds our templates.

    Called while the hub builds its handlers, after it has built its template loader.
    """
    add_templates(app)
    return [
        (PAGE_PATH, page),
        (f"{PAGE_PATH}/static/(.*)", PageStaticHandler, {"path": str(STATIC)}),
    ]


def add_templates(app: Any) -> None:
    """Put our templates after the operator's ``template_paths`` and before the hub's own.

    Notes
    -----
    Our ``page.html`` extends the hub's (``templates/page.html``) and adds one link to
    the navigation bar, so every hub page that extends ``page.html`` shows it. Placed
    after the operator's paths, an operator's own ``page.html`` still wins (and keeps
    working: it extends ``templates/page.html`` directly, so it lacks the link and nothing
    else); placed before the hub's defaults, ours wins over the plain one. The hub builds
    its loader (a ``ChoiceLoader`` whose second loader searches ``template_paths`` and
    then its default directory) before it asks the authenticator for handlers, so our
    directory goes into that loader's search path, just before the default directory.
    Were the loader ever shaped otherwise, the page still renders (our directory is
    searched last) and only the navigation link is missing.
    """
    settings = app.tornado_settings
    default = os.path.join(app.data_files_path, "templates")
    ours = str(TEMPLATES)
    envs = [settings[k] for k in ("jinja2_env", "jinja2_env_sync") if k in settings]
    for loader in {id(env.loader): env.loader for env in envs}.values():
        _insert(loader, ours, default)


def _insert(loader: BaseLoader, ours: str, default: str) -> None:
    candidates = loader.loaders if isinstance(loader, ChoiceLoader) else [loader]
    for candidate in candidates:
        if isinstance(candidate, FileSystemLoader) and default in candidate.searchpath:
            if ours not in candidate.searchpath:
                candidate.searchpath.insert(candidate.searchpath.index(default), ours)
            return
    if isinstance(loader, ChoiceLoader):
        loader.loaders = [*loader.loaders, FileSystemLoader([ours])]
