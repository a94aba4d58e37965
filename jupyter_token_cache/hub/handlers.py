"""REST handlers under /hub/api/token-cache, in JupyterHub's APIHandler conventions."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from ..rest import (
    LISTING_PARAMS,
    NOTEBOOK_FIELDS,
    RESET_PARAMS,
    header,
    internal_body,
    parse_body,
    query,
    with_message,
    write_json,
)
from ..scopes import ADMIN_SCOPE, EVENTS_SCOPE
from ..times import iso8601
from ..tokens.models import TokenRequestError, shown
from ..tokens.stream import sse, sse_caught_up, sse_heartbeat, sse_open
from .events import Subscription
from .resets import requested_wait

if TYPE_CHECKING:
    from ..tokens.events import Event
    from .authenticator import TokenCacheMixin


class TokenCacheAPIHandler(APIHandler):  # type: ignore[misc]  # jupyterhub ships no type hints
    """Shared plumbing: the extension, strict JSON bodies, policy errors as HTTP errors.

    Notes
    -----
    Bodies are parsed by :func:`~jupyter_token_cache.rest.parse_body`, which the
    replicated service's handlers call too, so both adapters refuse alike. Every
    refusal raises :class:`tornado.web.HTTPError`, which ``APIHandler`` writes as
    ``{"status": ..., "message": ...}``; messages name fields, scopes and services,
    never a token.
    """

    @property
    def extension(self) -> TokenCacheMixin:
        return self.authenticator  # type: ignore[no-any-return]

    def get_token(self) -> Any:
        """The request's token row, looked up once per request.

        The hub looks it up to authenticate and again to resolve scopes, and the session
        resolver needs it a third time; each lookup is a query and a hash.
        """
        if not hasattr(self, "_token_row"):
            self._token_row = super().get_token()
        return self._token_row

    def body(self, allowed: tuple[str, ...]) -> dict[str, Any]:
        """The JSON object in the request body ({} when empty), with only ``allowed`` fields."""
        return parse_body(self.request.body, allowed)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """JupyterHub's JSON error, with a message even where Tornado raised none
        (:func:`~jupyter_token_cache.rest.with_message`, as the replicated service does)."""
        if "exc_info" in kwargs:
            kwargs["exc_info"] = with_message(self, status_code, kwargs["exc_info"])
        super().write_error(status_code, **kwargs)

    def refuse(self, error: TokenRequestError) -> web.HTTPError:
        return web.HTTPError(error.status, error.message)

    def write_json(self, model: dict[str, Any] | list[Any]) -> None:
        write_json(self, model)

    def require_admin(self, *also: str) -> None:
        """Admin routes: admin:users, or the custom token-cache admin scope (or ``also``)."""
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials")
        allowed = {"admin:users", ADMIN_SCOPE, *also}
        if not allowed & set(self.expanded_scopes):
            raise web.HTTPError(403, f"Requires {' or '.join(sorted(allowed))}")


class NotFoundHandler(TokenCacheAPIHandler):
    """Any other path under /hub/api/token-cache: a 404 that says so (not ``"message": null``)."""

    def check_xsrf_cookie(self) -> None:
        """Nothing is done here, so a cookie without the XSRF header may hear the 404."""

    async def prepare(self) -> None:
        await super().prepare()
        raise web.HTTPError(404)


class NotebookTokenHandler(TokenCacheAPIHandler):
    """POST /hub/api/token-cache/notebook: the caller's session's notebook token."""

    async def post(self) -> None:
        try:
            session = self.extension.token_sessions.from_request(self)
            body = self.body(NOTEBOOK_FIELDS)
            issued = await self.extension.token_service.notebook_token(
                session, minimum_lifetime=body.get("minimum_lifetime")
            )
        except TokenRequestError as e:
            raise self.refuse(e) from None
        self.write_json(issued.model())


class InternalTokenHandler(TokenCacheAPIHandler):
    """POST /hub/api/token-cache/internal: a delegated token for one service."""

    async def post(self) -> None:
        try:
            session = self.extension.token_sessions.from_request(self)
            body = internal_body(self.request.body)
            issued = await self.extension.token_service.internal_token(
                session,
                body["service"],
                body.get("scopes"),
                minimum_lifetime=body.get("minimum_lifetime"),
            )
        except TokenRequestError as e:
            raise self.refuse(e) from None
        self.write_json(issued.model())


class StatsHandler(TokenCacheAPIHandler):
    """GET /hub/api/token-cache/stats (admin): counters and what the backend is."""

    def get(self) -> None:
        self.require_admin()
        stats = self.extension.token_service.stats()
        stats["events"] = self.extension.token_events.stats()
        stats["watched"] = dict(self.extension.token_watch.counts)
        stats["introspections"] = dict(self.extension.token_introspections)
        sweep = stats["sweep"] = dict(self.extension.token_observer.last_sweep)
        if "started" in sweep:
            sweep["started"] = iso8601(sweep["started"])
        exchange = getattr(self.extension, "token_exchange", None)
        if exchange is not None:  # only when c.TokenExchange.issuer is set
            stats["exchange"] = exchange.stats()
        upstream = getattr(self.extension, "token_upstream", None)
        if upstream is not None:  # only when c.UpstreamTokens.enabled
            stats["upstream"] = upstream.stats()
        self.write_json(stats)


class TokensHandler(TokenCacheAPIHandler):
    """GET /hub/api/token-cache/tokens (admin): the live tokens the cache minted, paginated.

    Filters ``user``, ``kind`` and ``service``; JupyterHub's ``offset`` / ``limit`` and,
    for clients that send ``Accept: application/jupyterhub-pagination+json``, its
    ``{"items": [...], "_pagination": {...}}`` envelope. Items never hold a token or a
    hash.
    """

    async def get(self) -> None:
        query(self, LISTING_PARAMS)  # each given once: refused first, as a replica refuses it
        self.require_admin()
        offset, limit = self.get_api_pagination()
        try:
            rows, total = await self.extension.token_service.listing(
                self.get_argument("user", None) or None,
                kind=self.get_argument("kind", None) or None,
                service=self.get_argument("service", None) or None,
                offset=offset,
                limit=limit,
            )
        except TokenRequestError as e:
            raise self.refuse(e) from None
        items = [row.model() for row in rows]
        if self.accepts_pagination:
            self.write_json(self.paginated_model(items, offset, limit, total))
        else:
            self.write_json(items)


class ResetHandler(TokenCacheAPIHandler):
    """DELETE /hub/api/token-cache[/users/{name}][?revoke=true] (admin): forget (and revoke).

    ``200`` with the result when the reset ends within a second (or what ``Prefer:
    wait=N`` asks), else ``202`` with the reset's handle (``Location``, and its model in
    the body), which :class:`ResetStatusHandler` answers; ``Prefer: respond-async``
    answers ``202`` at once (:mod:`~jupyter_token_cache.hub.resets`). A user's reset with
    revoke also ends their upstream session (``c.UpstreamTokens``), in the reset's job.
    """

    async def delete(self, name: str | None = None) -> None:
        arguments = query(self, RESET_PARAMS)  # refused first, as a replica refuses it
        self.require_admin()
        revoke = arguments.get("revoke", "false").lower()
        if revoke not in ("true", "false", "1", "0"):
            raise web.HTTPError(400, "revoke must be true or false")
        if name is not None and self.find_user(name) is None:
            raise web.HTTPError(404, f"No such user: {shown(name)}")
        reset = self.extension.token_resets.start(name, revoke=revoke in ("true", "1"))
        who = getattr(self.current_user, "name", "?")
        if await reset.wait(requested_wait(self.request.headers.get("Prefer"))):
            if reset.error:
                raise web.HTTPError(500, reset.error)
            self.log.info(
                "Token cache reset for %s by %s (%i revoked)",
                name or "all users",
                who,
                reset.revoked,
            )
            self.write_json(reset.result())
            return
        self.log.info(
            "Token cache reset %s for %s by %s continues in the background",
            reset.id,
            name or "all users",
            who,
        )
        self.set_status(202)
        self.set_header("Location", f"{self.hub.base_url}api/token-cache/resets/{reset.id}")
        self.write_json(reset.model())


class ResetStatusHandler(TokenCacheAPIHandler):
    """GET /hub/api/token-cache/resets/{id} (admin): how far a reset got, how it ended."""

    def get(self, reset_id: str) -> None:
        self.require_admin()
        reset = self.extension.token_resets.get(reset_id)
        if reset is None:
            raise web.HTTPError(404, f"No such reset: {shown(reset_id)} (or it ended long ago)")
        self.write_json(reset.model())


class EventsHandler(TokenCacheAPIHandler):
    """GET /hub/api/token-cache/events: lifecycle events as Server-Sent Events.

    Admins and holders of ``custom:token-cache:events``. Every stream opens with an
    ``open`` event saying from which position it vouches for its history (``since``) and
    where the hub stands (``position``); then the replay; then a ``retry`` block, which
    tells a follower it has caught up; then live events. A client resumes after
    ``Last-Event-ID`` (header, or ``last_event_id`` in the query for clients that cannot
    set headers) — an id no longer buffered gets a ``reset`` event first — or, new, asks
    for the events of the last ``replay`` seconds (``all``: whatever is buffered). Idle
    streams carry a heartbeat every ``event_heartbeat`` seconds whose ``id`` is the hub's
    position: everything up to it has been sent.
    """

    _sub: Subscription | None = None

    async def get(self) -> None:
        self.require_admin(EVENTS_SCOPE)
        broker = self.extension.token_events
        args = query(self, ("last_event_id", "replay"))
        last = header(self, "Last-Event-ID") or args.get("last_event_id")
        sub = self._sub = broker.subscribe(last, replay_seconds(args.get("replay")))
        heartbeat = self.extension.token_cache.event_heartbeat
        self.set_header("Content-Type", "text/event-stream; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")  # no proxy buffering (nginx)
        try:
            event: Event | None
            horizon = self.extension.token_cache.answer_horizon
            self.write(sse_open(sub.opening, heartbeat=heartbeat, horizon=horizon))
            for event in sub.opening.replay:
                self.write(sse(event))
            self.write(sse_caught_up(sub.opening.position))
            await self.flush()
            while not sub.dropped:
                try:
                    event = await asyncio.wait_for(sub.queue.get(), heartbeat)
                except asyncio.TimeoutError:
                    self.write(sse_heartbeat(broker.position()))
                else:
                    while event is not None:
                        self.write(sse(event))
                        event = sub.queue.get_nowait() if not sub.queue.empty() else None
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            broker.unsubscribe(sub)
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        if self._sub is not None:
            self.extension.token_events.end(self._sub)


def replay_seconds(value: str | None) -> float | None:
    """The ``replay`` argument of the event stream: seconds (>= 0), ``all``, or absent."""
    if value is None:
        return None
    if value.strip().lower() == "all":
        return float("inf")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise web.HTTPError(400, "replay must be a number of seconds or all")
    return seconds
