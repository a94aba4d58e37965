"""Ask the hub for tokens from a notebook or a service: sync and async httpx clients.

Like JupyterHub's own tools, the hub is found through ``JUPYTERHUB_API_URL`` and the
caller proves who it is with ``JUPYTERHUB_API_TOKEN``; both are set in every server the
hub spawns. In the replicated mode the hub also sets ``JUPYTER_TOKEN_CACHE_URL``, the
service's URL, which is then asked instead (the same routes and answers)::

    from jupyter_token_cache.client import get_internal_token
    token = get_internal_token("dask", scopes=["access:services!service=dask"]).token

The user's identity-provider tokens (``c.UpstreamTokens``), in one line::

    httpx.get("https://s3.example.org/bucket", auth=UpstreamAuth("s3"))
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncGenerator, Generator
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


@dataclass(frozen=True)
class UpstreamToken:
    """The user's token at the identity provider (the login's, or a target's)."""

    access_token: str
    token_type: str
    #: When it stops working (an aware UTC datetime); None when nobody knows.
    expires_at: datetime | None
    #: Whole seconds it had left when the hub answered; None when nobody knows.
    expires_in: int | None
    scope: str
    target: str | None
    cached: bool

    @classmethod
    def from_model(cls, body: dict[str, Any]) -> UpstreamToken:
        """Read an upstream token answer; fields a newer hub adds are ignored."""
        expires_at = body["expires_at"]
        return cls(
            access_token=body["access_token"],
            token_type=body["token_type"],
            expires_at=None if expires_at is None else parse_iso8601(expires_at),
            expires_in=body["expires_in"],
            scope=body["scope"],
            target=body["target"],
            cached=body["cached"],
        )

    def __repr__(self) -> str:  # never print the secret
        return f"UpstreamToken(target={self.target!r}, expires_at={self.expires_at})"


class TokenCacheError(Exception):
    """The hub refused: ``status`` and ``message`` as its JSON error said; ``error`` the
    OAuth code where it gave one (``login_required``: log in to the hub again;
    ``temporarily_unavailable``: the identity provider is down, ask again later)."""

    def __init__(self, status: int, message: str, error: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.error = error


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
    def upstream(target: str | None, minimum_lifetime: int | None) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {}
        if target is not None:
            body["target"] = target
        if minimum_lifetime is not None:
            body["minimum_lifetime"] = minimum_lifetime
        return "/upstream", body

    @staticmethod
    def body(response: httpx.Response) -> dict[str, Any]:
        """The JSON object of a 200 answer; :class:`TokenCacheError` for anything else."""
        try:
            body = response.json()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code != 200:
            error = body.get("error")
            raise TokenCacheError(
                response.status_code,
                str(body.get("message") or response.reason_phrase),
                error if isinstance(error, str) else None,
            )
        return body

    @classmethod
    def read(cls, response: httpx.Response) -> Token:
        """The token of a 200 answer; :class:`TokenCacheError` for anything else."""
        try:
            return Token.from_model(cls.body(response))
        except (KeyError, TypeError, ValueError):
            raise TokenCacheError(200, _NOT_AN_ANSWER) from None

    @classmethod
    def read_upstream(cls, response: httpx.Response) -> UpstreamToken:
        """The upstream token of a 200 answer; :class:`TokenCacheError` for anything else."""
        try:
            return UpstreamToken.from_model(cls.body(response))
        except (KeyError, TypeError, ValueError):
            raise TokenCacheError(200, _NOT_AN_ANSWER) from None


_NOT_AN_ANSWER = "The answer holds no token (is the URL the hub's?)"


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

    def get_upstream_token(
        self, target: str | None = None, *, minimum_lifetime: int | None = None
    ) -> UpstreamToken:
        """Your token at the identity provider: ``target``'s, else the login's."""
        path, body = self._calls.upstream(target, minimum_lifetime)
        return self._calls.read_upstream(self._http.post(path, json=body))

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

    async def get_upstream_token(
        self, target: str | None = None, *, minimum_lifetime: int | None = None
    ) -> UpstreamToken:
        """Your token at the identity provider: ``target``'s, else the login's."""
        path, body = self._calls.upstream(target, minimum_lifetime)
        return self._calls.read_upstream(await self._http.post(path, json=body))

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


def get_upstream_token(
    target: str | None = None, *, minimum_lifetime: int | None = None
) -> UpstreamToken:
    """One call with the environment's hub and credentials: your identity-provider token."""
    with TokenCacheClient() as client:
        return client.get_upstream_token(target, minimum_lifetime=minimum_lifetime)


class _Upstream:
    """The token an auth attaches, and when it must be asked for again (by this clock)."""

    def __init__(self, target: str | None, minimum_lifetime: int | None) -> None:
        self.target = target
        self.minimum_lifetime = minimum_lifetime
        self.token: UpstreamToken | None = None
        self.good_until = 0.0

    def current(self) -> str | None:
        """The header value to send, while the token has enough left (see ``UpstreamAuth``)."""
        if self.token is None or time.monotonic() >= self.good_until:
            return None
        return f"Bearer {self.token.access_token}"

    def keep(self, token: UpstreamToken) -> str:
        self.token = token
        left = float("inf") if token.expires_in is None else float(token.expires_in)
        keep = left - self.minimum_lifetime if self.minimum_lifetime is not None else left / 2
        self.good_until = time.monotonic() + keep
        return f"Bearer {token.access_token}"

    def drop(self) -> None:
        self.token = None


class UpstreamAuth(httpx.Auth):
    """httpx authentication with the user's identity-provider token, kept fresh.

    ``httpx.get(url, auth=UpstreamAuth("s3"))`` (or ``httpx.AsyncClient(auth=...)``):
    every request goes out with a token that has at least ``minimum_lifetime`` seconds
    left (without one: the hub's minimum, and the token is kept for half the time it had
    left), asked of the hub only when the one it has runs short; a request the server
    answers 401 is sent once more with a token asked for anew.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        minimum_lifetime: int | None = None,
        client: TokenCacheClient | None = None,
        async_client: AsyncTokenCacheClient | None = None,
    ) -> None:
        self._upstream = _Upstream(target, minimum_lifetime)
        self._client = client
        self._async_client = async_client
        self._lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None

    def _fetch(self) -> str:
        with self._lock:
            header = self._upstream.current()
            if header is None:
                self._client = self._client or TokenCacheClient()
                u = self._upstream
                header = u.keep(
                    self._client.get_upstream_token(u.target, minimum_lifetime=u.minimum_lifetime)
                )
            return header

    async def _afetch(self) -> str:
        self._async_lock = self._async_lock or asyncio.Lock()
        async with self._async_lock:
            header = self._upstream.current()
            if header is None:
                self._async_client = self._async_client or AsyncTokenCacheClient()
                u = self._upstream
                token = await self._async_client.get_upstream_token(
                    u.target, minimum_lifetime=u.minimum_lifetime
                )
                header = u.keep(token)
            return header

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._fetch()
        response = yield request
        if response.status_code == 401:
            self._upstream.drop()
            request.headers["Authorization"] = self._fetch()
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = await self._afetch()
        response = yield request
        if response.status_code == 401:
            self._upstream.drop()
            request.headers["Authorization"] = await self._afetch()
            yield request


class UpstreamRequestsAuth:
    """The same for ``requests``: ``requests.get(url, auth=UpstreamRequestsAuth("s3"))``.

    requests takes any callable as ``auth`` (what its ``AuthBase`` is), so this needs no
    import of requests.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        minimum_lifetime: int | None = None,
        client: TokenCacheClient | None = None,
    ) -> None:
        self._auth = UpstreamAuth(target, minimum_lifetime=minimum_lifetime, client=client)

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = self._auth._fetch()
        return request
