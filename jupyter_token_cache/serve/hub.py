"""The replica's calls to the hub: a caller's request passed on with the caller's own credential."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from ..rest import error_message


@dataclass(frozen=True)
class HubAnswer:
    """What the hub answered: its status, JSON body (None when not JSON) and content type."""

    status: int
    body: Any
    content_type: str

    @property
    def message(self) -> str:
        """The hub's error message (JupyterHub's ``{"status", "message"}``), or its status."""
        return error_message(self.body) or f"The hub answered {self.status}"


class HubUnreachable(Exception):
    """The hub could not be asked (connection refused, timeout): the caller gets a 503."""


class HubForwarder:
    """Send token-cache requests to the hub's own routes, counted by route.

    Notes
    -----
    The replica never acts with a credential of its own here: each request carries
    the caller's ``Authorization`` header, so the hub authenticates the caller, resolves
    its session and applies every rule exactly as if the caller had come straight to
    it. The replica's own token is only used by ``CachedHubAuth`` (introspection and
    the event stream).
    """

    def __init__(
        self, api_url: str, *, timeout: float, log: logging.Logger, verify: Any = True
    ) -> None:
        self.base = api_url.rstrip("/") + "/token-cache"
        self.log = log
        self.counts: Counter[str] = Counter()
        self._http = httpx.AsyncClient(timeout=timeout, verify=verify)

    async def call(
        self,
        method: str,
        path: str,
        authorization: str | None,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        accept: str | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        prefer: str | None = None,
    ) -> HubAnswer:
        """``method`` ``{api_url}/token-cache{path}`` as the caller; raise :class:`HubUnreachable`.

        ``body`` is sent as JSON; ``content`` as it is, with ``content_type`` (a body
        passed on unread). ``authorization`` is the caller's header (None: none sent);
        ``prefer`` the caller's ``Prefer`` header (how long a reset may be waited for).
        """
        headers = {}
        if authorization:
            headers["Authorization"] = authorization
        if accept:
            headers["Accept"] = accept
        if content_type:
            headers["Content-Type"] = content_type
        if prefer:
            headers["Prefer"] = prefer
        if body is not None:
            content = json.dumps(body).encode()
        self.counts[f"{method} {path.split('/users/')[0].split('/resets/')[0] or '/'}"] += 1
        try:
            response = await self._http.request(
                method,
                self.base + path,
                headers=headers,
                params=params,
                content=content,
            )
        except httpx.HTTPError as e:
            self.counts["errors"] += 1
            raise HubUnreachable(f"The hub is unreachable ({type(e).__name__})") from None
        content_type = response.headers.get("Content-Type", "")
        try:
            parsed = response.json()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser
            parsed = None
        return HubAnswer(response.status_code, parsed, content_type)

    async def close(self) -> None:
        await self._http.aclose()
