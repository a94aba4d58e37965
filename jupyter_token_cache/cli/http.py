"""The hub's REST API over httpx: each failure a one-line :class:`CommandError`."""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx

from ..rest import error_message
from .errors import REFUSED, UNREACHABLE, CommandError

#: JupyterHub's paginated answer (items plus ``_pagination``), where a route offers one.
PAGINATION = "application/jupyterhub-pagination+json"


def api_url(url: str) -> str:
    """The hub's API URL: ``url`` as given when it ends in ``/api`` (as
    ``JUPYTERHUB_API_URL`` does), else ``url`` + ``/hub/api`` (the hub's public URL)."""
    url = url.rstrip("/")
    if urllib.parse.urlparse(url).path.endswith("/api"):
        return url
    return f"{url}/hub/api"


class Hub:
    """A client for ``{api_url}/token-cache/...`` carrying one token.

    Notes
    -----
    Errors name the route and the hub's own message, which for a 403 names the scope
    the route needs; they never contain the token. Connection failures are their own
    exit status so that a script can tell "hub down" from "refused".
    """

    def __init__(self, url: str, token: str, *, timeout: float) -> None:
        self.url = api_url(url)
        self._client = httpx.Client(
            base_url=self.url + "/",
            headers={"Authorization": f"token {token}"},
            timeout=timeout,
        )

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The JSON answer of ``method path``; a :class:`CommandError` for anything else."""
        with self._calling(method, path):
            response = self._client.request(method, path, params=params, headers=headers)
        self.check(response)
        try:
            return response.json()
        except (ValueError, RecursionError):
            raise CommandError(f"{method} {self.where(path)}: the answer is not JSON") from None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    @contextlib.contextmanager
    def stream(
        self,
        path: str,
        *,
        read_timeout: float | None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Iterator[Iterator[str]]:
        """The lines of a streamed answer (Server-Sent Events), checked like any other."""
        timeout = httpx.Timeout(self._client.timeout.connect, read=read_timeout)
        with (
            self._calling("GET", path),
            self._client.stream(
                "GET", path, timeout=timeout, headers=headers, params=params
            ) as response,
        ):
            if response.status_code != 200:
                response.read()
                self.check(response)
            yield response.iter_lines()

    def where(self, path: str) -> str:
        return urllib.parse.urlparse(f"{self.url}/{path}").path

    @contextlib.contextmanager
    def _calling(self, method: str, path: str) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException:
            raise CommandError(
                f"{method} {self.where(path)}: the hub at {self.url} did not answer in time",
                UNREACHABLE,
            ) from None
        except (httpx.TransportError, OSError) as e:
            # a request the library refused to send: its message may quote a header
            local = isinstance(e, httpx.LocalProtocolError)
            reason = type(e).__name__ if local else str(e) or type(e).__name__
            raise CommandError(
                f"cannot reach the hub at {self.url}: {reason}", UNREACHABLE
            ) from None
        except httpx.HTTPError as e:  # an answer httpx could not read (its encoding, ...)
            raise CommandError(
                f"{method} {self.where(path)}: the answer cannot be read ({type(e).__name__})"
            ) from None

    def check(self, response: httpx.Response) -> None:
        """Raise the :class:`CommandError` an error answer means."""
        if response.status_code < 400:
            return
        path = response.request.url.path
        message = _message(response)
        from_hub = bool(message)
        if response.status_code in (401, 403):
            raise CommandError(f"{response.status_code} from {path}: {message}", REFUSED)
        if response.status_code == 404 and not message:
            message = (
                "not found: is the token cache installed in this hub "
                "(c.JupyterHub.authenticator_class = with_token_cache(...)), and is the URL "
                "the hub's?"
            )
        raise CommandError(
            f"{response.status_code} from {path}: {message or response.reason_phrase}",
            http_status=response.status_code,
            from_hub=from_hub,
        )


def _message(response: httpx.Response) -> str:
    """The ``message`` of a JupyterHub JSON error on one line, or an empty string."""
    try:
        body = json.loads(response.text)
    except (ValueError, RecursionError):
        return ""
    return " ".join(error_message(body).split())


__all__ = ["PAGINATION", "Hub", "api_url"]
