"""Ask the hub for tokens from a notebook or a service: sync and async httpx clients.

Like JupyterHub's own tools, the hub is found through ``JUPYTERHUB_API_URL`` and the
caller proves who it is with ``JUPYTERHUB_API_TOKEN``; both are set in every server the
hub spawns. In the replicated mode the hub also sets ``JUPYTER_TOKEN_CACHE_URL``, the
service's URL, which is then asked instead (the same routes and answers)::

    from jupyter_token_cache.client import get_internal_token
    token = get_internal_token("dask", scopes=["access:services!service=dask"]).token
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from .times import parse_iso8601

API_PATH = "token-cache"
#: Set in spawned servers in the replicated mode: the token-cache service's URL.
API_URL_ENV = "JUPYTER_TOKEN_CACHE_URL"


@dataclass(frozen=True)
class Token:
    """A token the hub handed out."""

    token: str
    id: str
    #: When it stops working (an aware UTC datetime).
    expires_at: datetime
    #: Whole seconds it had left when the hub answered.
    expires_in: int
    scopes: list[str]
    cached: bool
    service: str | None = None

    @classmethod
    def from_model(cls, body: dict[str, Any]) -> Token:
        """Read a token answer; fields a newer hub adds are ignored."""
        return cls(
            token=body["token"],
            id=body["id"],
            expires_at=parse_iso8601(body["expires_at"]),
            expires_in=body["expires_in"],
            scopes=body["scopes"],
            cached=body["cached"],
            service=body.get("service"),
        )

    def __repr__(self) -> str:  # never print the secret
        return f"Token(id={self.id!r}, expires_at={self.expires_at}, cached={self.cached})"


class TokenCacheError(Exception):
    """The hub refused: ``status`` and ``message`` as its JSON error said."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class _Calls:
    """What both clients share: where to call, with what, and how to read the answer."""

    def __init__(self, api_url: str | None, token: str | None) -> None:
        service_url = None if api_url else os.environ.get(API_URL_ENV)
        api_url = api_url or os.environ.get("JUPYTERHUB_API_URL")
        token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
        if not (service_url or api_url) or not token:
            raise TokenCacheError(
                0, "Set JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN, or pass api_url and token"
            )
        if service_url:  # the replicated service: the same routes at its own prefix
            self.base_url = service_url.rstrip("/")
        else:
            self.base_url = f"{str(api_url).rstrip('/')}/{API_PATH}"
        self.headers = {"Authorization": f"token {token}"}

    @staticmethod
    def notebook(minimum_lifetime: int | None) -> tuple[str, dict[str, Any]]:
        body = {} if minimum_lifetime is None else {"minimum_lifetime": minimum_lifetime}
        return "/notebook", body

    @staticmethod
    def internal(
        service: str, scopes: list[str] | None, minimum_lifetime: int | None
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"service": service}
        if scopes is not None:
            body["scopes"] = list(scopes)
        if minimum_lifetime is not None:
            body["minimum_lifetime"] = minimum_lifetime
        return "/internal", body

    @staticmethod
    def read(response: httpx.Response) -> Token:
        """The token of a 200 answer; :class:`TokenCacheError` for anything else."""
        try:
            body = response.json()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code != 200:
            raise TokenCacheError(
                response.status_code, str(body.get("message") or response.reason_phrase)
            )
        try:
            return Token.from_model(body)
        except (KeyError, TypeError, ValueError):
            raise TokenCacheError(
                200, "The answer holds no token (is the URL the hub's?)"
            ) from None


class TokenCacheClient:
    """Synchronous client: ``TokenCacheClient().get_notebook_token()``."""

    def __init__(
        self, api_url: str | None = None, token: str | None = None, *, timeout: float = 30
    ) -> None:
        self._calls = _Calls(api_url, token)
        self._http = httpx.Client(
            base_url=self._calls.base_url, headers=self._calls.headers, timeout=timeout
        )

    def _post(self, path: str, body: dict[str, Any]) -> Token:
        return self._calls.read(self._http.post(path, json=body))

    def get_notebook_token(self, *, minimum_lifetime: int | None = None) -> Token:
        """This session's notebook token (the same one while it has enough life left)."""
        return self._post(*self._calls.notebook(minimum_lifetime))

    def get_internal_token(
        self, service: str, scopes: list[str] | None = None, *, minimum_lifetime: int | None = None
    ) -> Token:
        """A token for ``service``, with ``scopes`` or all the service's policy allows you."""
        return self._post(*self._calls.internal(service, scopes, minimum_lifetime))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TokenCacheClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTokenCacheClient:
    """Asynchronous client: ``await AsyncTokenCacheClient().get_notebook_token()``."""

    def __init__(
        self, api_url: str | None = None, token: str | None = None, *, timeout: float = 30
    ) -> None:
        self._calls = _Calls(api_url, token)
        self._http = httpx.AsyncClient(
            base_url=self._calls.base_url, headers=self._calls.headers, timeout=timeout
        )

    async def _post(self, path: str, body: dict[str, Any]) -> Token:
        return self._calls.read(await self._http.post(path, json=body))

    async def get_notebook_token(self, *, minimum_lifetime: int | None = None) -> Token:
        """This session's notebook token (the same one while it has enough life left)."""
        return await self._post(*self._calls.notebook(minimum_lifetime))

    async def get_internal_token(
        self, service: str, scopes: list[str] | None = None, *, minimum_lifetime: int | None = None
    ) -> Token:
        """A token for ``service``, with ``scopes`` or all the service's policy allows you."""
        return await self._post(*self._calls.internal(service, scopes, minimum_lifetime))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncTokenCacheClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def get_notebook_token(*, minimum_lifetime: int | None = None) -> Token:
    """One call with the environment's hub and credentials."""
    with TokenCacheClient() as client:
        return client.get_notebook_token(minimum_lifetime=minimum_lifetime)


def get_internal_token(
    service: str, scopes: list[str] | None = None, *, minimum_lifetime: int | None = None
) -> Token:
    """One call with the environment's hub and credentials."""
    with TokenCacheClient() as client:
        return client.get_internal_token(service, scopes, minimum_lifetime=minimum_lifetime)
