"""REST handlers of the replicated service: the hub's token-cache routes, under the service's prefix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tornado import web

from ..cache.answers import INACTIVE, as_answered
from ..rest import (
    LISTING_PARAMS,
    NOTEBOOK_FIELDS,
    RESET_PARAMS,
    header,
    internal_body,
    introspected_token,
    json_error,
    parse_body,
    query,
    rfc_error,
    with_message,
    write_json,
)
from ..scopes import INTROSPECT_SCOPE
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
        write_json(self, {"status": status_code, "message": message})

    def credential(self) -> str | None:
        """The token of the caller's ``Authorization`` header, or None without one."""
        authorization = header(self, "Authorization") or ""  # non-ASCII: none, as at the hub
        scheme, _, credential = authorization.strip().partition(" ")
        if scheme.lower() not in _SCHEMES or not credential.strip():
            return None
        return credential.strip()

    def authorization(self) -> str:
        """The caller's ``Authorization`` header, as the hub will read it; 403 without one."""
        credential = self.credential()
        if credential is None:
            raise web.HTTPError(403, "Missing or invalid credentials")
        return f"token {credential}"

    async def check(self, token: str) -> dict[str, Any] | None:
        """The hub's (cached, revocation-aware) introspection of ``token``; None when inactive."""
        try:
            return await self.replica.auth.token_checker().check(token)
        except HubUnavailable as e:
            raise web.HTTPError(503, str(e)) from None
        except IntrospectionRefused as e:
            self.log.error("%s", e)
            raise web.HTTPError(503, "This service cannot check tokens (see its log)") from None

    async def caller(self) -> tuple[str, dict[str, Any]]:
        """The caller's token and the hub's (cached) introspection of it; 403 when inactive."""
        credential = self.authorization().partition(" ")[2]
        answer = await self.check(credential)
        if answer is None:
            raise web.HTTPError(403, "Missing or invalid credentials")
        if answer.get("owner_kind", "user") != "user":
            raise web.HTTPError(403, "Only users' credentials can ask for tokens")
        return credential, answer

    async def pass_on(
        self, method: str, path: str, *, params: dict[str, str] | None = None
    ) -> HubAnswer:
        """Ask the hub's own route as the caller; its refusals are written as they are.

        A ``202`` (a reset that runs on) is an answer too, written with its status.
        """
        try:
            answer = await self.replica.hub.call(
                method,
                path,
                self.authorization(),
                params=params,
                accept=header(self, "Accept"),
                prefer=header(self, "Prefer"),
            )
        except HubUnreachable as e:
            raise web.HTTPError(503, str(e)) from None
        if answer.status not in (200, 202) or answer.body is None:
            raise web.HTTPError(answer.status if answer.status >= 400 else 502, answer.message)
        self.set_status(answer.status)
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


class IntrospectHandler(ServeHandler):
    """POST {prefix}introspect (RFC 7662): answered from this replica's cached token checks.

    Notes
    -----
    The same route as the hub's, for services that introspect through the replicas:
    the caller authenticates with its own token, which must hold
    ``custom:token-cache:introspect`` (refused with the hub's words otherwise), and the
    token in the body gets the hub's own answer — cached on the shared backend and judged
    against the event stream exactly as the replica's callers are, so a revoked token is
    ``{"active": false}`` as soon as the replica hears of it. Every inactive answer is
    exactly that, and a malformed token is looked up like any other
    (:func:`~jupyter_token_cache.rest.introspected_token`). The hub records a token's
    activity when it is introspected, so a token answered from the cache shows the
    activity of its first check.
    """

    async def post(self) -> None:
        credential = self.credential()
        caller = None if credential is None else await self.check(credential)
        if caller is None:
            raise web.HTTPError(403, f"Requires {INTROSPECT_SCOPE} (with a token)")
        if INTROSPECT_SCOPE not in caller.get("scopes", ()):
            raise web.HTTPError(403, f"Requires {INTROSPECT_SCOPE}")
        answer = await self.check(introspected_token(self))
        counts = self.replica.introspections
        counts["requests"] += 1
        counts["active" if answer is not None else "inactive"] += 1
        write_json(self, INACTIVE if answer is None else as_answered(answer))


class ExchangeHandler(ServeHandler):
    """POST {prefix}exchange (RFC 8693): passed to the hub's route, its answer written as it is.

    Notes
    -----
    The subject token is an upstream credential that only the hub verifies (with the
    identity provider, its answers cached there) and admits (with its authenticator's
    own checks), so each exchange is one hub request; the replica adds nothing but the
    route under its prefix. The body goes as the caller sent it (form or JSON), with no
    credential of the replica's.
    """

    async def post(self) -> None:
        try:
            answer = await self.replica.hub.call(
                "POST",
                "/exchange",
                None,
                content=self.request.body,
                content_type=header(self, "Content-Type"),
            )
        except HubUnreachable as e:
            rfc_error(self, "temporarily_unavailable", str(e), 503)
        if answer.body is None:
            rfc_error(self, "temporarily_unavailable", answer.message, 503)
        self.set_status(answer.status)
        write_json(self, answer.body)


class UpstreamHandler(ServeHandler):
    """POST {prefix}upstream: passed to the hub's route as the caller, its answer written as it is.

    Notes
    -----
    The upstream session lives in the hub: the auth state (in its database, sealed with
    its key) holds the refresh token, and the hub's section is what makes a refresh
    happen once per user. This replica could cache the hub's answers at the edge, but
    it would then have to follow every end of an upstream session (logout, an
    ``invalid_grant``) as it follows token ends, to stop serving a token the hub has
    dropped; passing each request on keeps one place that decides, at the cost of one
    hub request per call — about what ``GET /hub/api/user`` costs (the benchmark). The
    caller's own credential goes with it, so the hub applies every rule as if the
    caller had come straight to it; the body goes as sent, refused by the hub's parser.
    """

    async def post(self) -> None:
        authorization = self.authorization()  # none: the hub's own 403
        try:
            answer = await self.replica.hub.call(
                "POST",
                "/upstream",
                authorization,
                content=self.request.body,
                content_type=header(self, "Content-Type"),
            )
        except HubUnreachable as e:
            json_error(self, 503, str(e), "temporarily_unavailable")
            return
        if not isinstance(answer.body, dict):
            json_error(self, 502, answer.message, None)
            return
        if answer.status != 200:
            error = answer.body.get("error")
            json_error(
                self, answer.status, answer.message, error if isinstance(error, str) else None
            )
            return
        write_json(self, answer.body)


class StatsHandler(ServeHandler):
    """GET {prefix}stats (admin, checked by the hub): the hub's counters plus this replica's."""

    async def get(self) -> None:
        answer = await self.pass_on("GET", "/stats")
        replica = {
            **self.replica.edge.stats(),
            "introspections": dict(self.replica.introspections),
            "checks": self.replica.auth.token_check_stats(),
        }
        write_json(self, {**answer.body, "replica": replica})


class TokensHandler(ServeHandler):
    """GET {prefix}tokens (admin): the hub's listing, with the caller's filters and paging."""

    async def get(self) -> None:
        answer = await self.pass_on("GET", "/tokens", params=query(self, LISTING_PARAMS))
        write_json(self, answer.body)


class ResetHandler(ServeHandler):
    """DELETE {prefix}[users/{name}][?revoke=true] (admin): the hub's reset, then this cache's.

    A reset the hub runs on (``202``) is this replica's ``202`` too, its ``Location`` the
    handle under this service's prefix (:class:`ResetStatusHandler`).
    """

    async def delete(self, name: str | None = None) -> None:
        path = "" if name is None else f"/users/{quote(name, safe='')}"
        answer = await self.pass_on("DELETE", path, params=query(self, RESET_PARAMS))
        await self.replica.edge.forget(name)
        self.log.info(
            "Token cache reset for %s, through this replica",
            "all users" if name is None else shown(name),
        )
        if answer.status == 202:
            reset_id = quote(str(answer.body.get("id", "")), safe="")
            self.set_header("Location", f"{self.settings['token_cache_prefix']}resets/{reset_id}")
        write_json(self, answer.body)


class ResetStatusHandler(ServeHandler):
    """GET {prefix}resets/{id} (admin): the hub's handle of a reset that runs on."""

    async def get(self, reset_id: str) -> None:
        answer = await self.pass_on("GET", f"/resets/{quote(reset_id, safe='')}")
        write_json(self, answer.body)


class HealthHandler(ServeHandler):
    """GET {prefix}health: up, and whether the hub's event stream is followed (no credential)."""

    def get(self) -> None:
        write_json(self, {"stream_connected": self.replica.auth.revocations.connected})


class NotFoundHandler(ServeHandler):
    """Any other path under the service's prefix: a 404 worded as the hub's (``with_message``)."""

    def prepare(self) -> None:
        raise web.HTTPError(404)
