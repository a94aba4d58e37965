"""REST handlers of the replicated service: the hub's token-cache routes, under the service's prefix."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tornado import web

from ..rest import NOTEBOOK_FIELDS, internal_body, parse_body, with_message, write_json
from ..services.checker import HubUnavailable, IntrospectionRefused
from ..tokens.models import shown
from .edge import HubRefusal
from .hub import HubAnswer, HubUnreachable

if TYPE_CHECKING:
    from .replica import TokenCacheReplica

#: Authorization schemes JupyterHub accepts for a token.
_SCHEMES = ("token", "bearer")


class ServeHandler(web.RequestHandler):
    """JSON errors as JupyterHub writes them; the caller's credential; the hub's answers passed on.

    Notes
    -----
    Only tokens authenticate here (``Authorization: token ...`` or ``Bearer``): the hub's
    login cookie is not sent to a service, and a service's own OAuth cookie is not a
    session the hub's token routes know. So there is no cookie and no XSRF check.
    Error answers carry the status and a message, never a traceback or a token.
    """

    @property
    def replica(self) -> TokenCacheReplica:
        return self.settings["token_cache_replica"]  # type: ignore[no-any-return]

    def check_xsrf_cookie(self) -> None:
        """Tokens only (see the class notes)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = with_message(self, status_code, kwargs.get("exc_info"))
        exc = exc_info[1] if exc_info else None
        message = getattr(exc, "log_message", None) or self._reason
        if status_code >= 500 and not isinstance(exc, web.HTTPError):
            message = "Internal server error (see the service's log)"
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def authorization(self) -> str:
        """The caller's ``Authorization`` header, as the hub will read it; 403 without one."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, credential = header.strip().partition(" ")
        if scheme.lower() not in _SCHEMES or not credential.strip():
            raise web.HTTPError(403, "Missing or invalid credentials")
        return f"token {credential.strip()}"

    async def caller(self) -> tuple[str, dict[str, Any]]:
        """The caller's token and the hub's (cached) introspection of it; 403 when inactive."""
        credential = self.authorization().partition(" ")[2]
        try:
            answer = await self.replica.auth.token_checker().check(credential)
        except HubUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        except IntrospectionRefused as e:
            self.log.error("%s", e)
            raise web.HTTPError(503, "This service cannot check tokens (see its log)") from None
        if answer is None:
            raise web.HTTPError(403, "Missing or invalid credentials")
        if answer.get("owner_kind", "user") != "user":
            raise web.HTTPError(403, "Only users' credentials can ask for tokens")
        return credential, answer

    async def pass_on(
        self, method: str, path: str, *, params: dict[str, str] | None = None
    ) -> HubAnswer:
        """Ask the hub's own route as the caller; its refusals are written as they are."""
        try:
            answer = await self.replica.hub.call(
                method,
                path,
                self.authorization(),
                params=params,
                accept=self.request.headers.get("Accept"),
            )
        except HubUnreachable as e:
            raise web.HTTPError(503, str(e)) from None
        if answer.status != 200 or answer.body is None:
            raise web.HTTPError(answer.status if answer.status >= 400 else 502, answer.message)
        return answer

    @property
    def log(self) -> Any:
        return self.replica.log


class TokenHandler(ServeHandler):
    """POST {prefix}notebook and {prefix}internal: served by the edge cache, or by the hub."""

    kind = "notebook"

    async def post(self) -> None:
        credential, caller = await self.caller()
        if self.kind == "notebook":
            body = parse_body(self.request.body, NOTEBOOK_FIELDS)
        else:
            body = internal_body(self.request.body)
        try:
            model = await self.replica.edge.issue(self.kind, credential, caller, body)
        except HubRefusal as e:
            raise web.HTTPError(e.status, e.message) from None
        except HubUnreachable as e:
            raise web.HTTPError(503, str(e)) from None
        write_json(self, model)


class NotebookTokenHandler(TokenHandler):
    kind = "notebook"


class InternalTokenHandler(TokenHandler):
    kind = "internal"


class StatsHandler(ServeHandler):
    """GET {prefix}stats (admin, checked by the hub): the hub's counters plus this replica's."""

    async def get(self) -> None:
        answer = await self.pass_on("GET", "/stats")
        write_json(self, {**answer.body, "replica": self.replica.edge.stats()})


class TokensHandler(ServeHandler):
    """GET {prefix}tokens (admin): the hub's listing, with the caller's filters and paging."""

    async def get(self) -> None:
        params = {k: self.get_argument(k) for k in self.request.arguments}
        answer = await self.pass_on("GET", "/tokens", params=params)
        write_json(self, answer.body)


class ResetHandler(ServeHandler):
    """DELETE {prefix}[users/{name}][?revoke=true] (admin): the hub's reset, then this cache's."""

    async def delete(self, name: str | None = None) -> None:
        params = {k: self.get_argument(k) for k in self.request.arguments}
        path = "" if name is None else f"/users/{quote(name, safe='')}"
        answer = await self.pass_on("DELETE", path, params=params)
        await self.replica.edge.forget(name)
        self.log.info(
            "Token cache reset for %s, through this replica",
            "all users" if name is None else shown(name),
        )
        write_json(self, answer.body)


class HealthHandler(ServeHandler):
    """GET {prefix}health: up, and whether the hub's event stream is followed (no credential)."""

    def get(self) -> None:
        write_json(self, {"stream_connected": self.replica.auth.revocations.connected})


class NotFoundHandler(ServeHandler):
    """Any other path under the service's prefix: a 404 worded as the hub's (``with_message``)."""

    def prepare(self) -> None:
        raise web.HTTPError(404)
