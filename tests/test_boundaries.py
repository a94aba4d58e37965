"""Every boundary where a client library is called, walked with every exception it can raise.

Each place the package calls httpx, redis, PyJWT or ``json`` is listed here with the
error it must turn a failure into — the route's documented answer: a 503 the caller can
retry, an inactive token, a miss, a one-line command error. Each test raises *every*
exception class the library defines (found by walking its exception hierarchy, so a
class a new version adds is walked too) at that boundary, and checks that nothing else
comes out: no exception escapes as a 500, a traceback or an "unexpected" error, and no
message quotes a token.

The exceptions are raised where the library raises them: an httpx transport (the layer
under every request httpx makes), the redis client's ``execute_command`` (under every
Redis command the stores send), PyJWT's ``decode``. Answers a server could send (not
JSON, not UTF-8, nested deeper than the parser goes) come from a transport too.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
import redis.exceptions
from tornado import web

from jupyter_token_cache import TokenCache
from jupyter_token_cache.cache import CacheKey, close_all
from jupyter_token_cache.cache.answers import Unavailable
from jupyter_token_cache.cli.errors import FAILED, UNREACHABLE, CommandError
from jupyter_token_cache.cli.http import Hub
from jupyter_token_cache.client import AsyncTokenCacheClient, TokenCacheClient, TokenCacheError
from jupyter_token_cache.rest import INTERNAL_FIELDS, NOTEBOOK_FIELDS, parse_body
from jupyter_token_cache.serve.hub import HubForwarder, HubUnreachable
from jupyter_token_cache.upstream import TokenExchange, exchange_verifier
from jupyter_token_cache.upstream.exchange import ExchangeError, UpstreamVerifier

from .oidc.jwks import AUDIENCE, KeySet, running_keyset
from .servers import RedisServer
from .upstream.sessions import Sessions

LOG = logging.getLogger("test")
SECRET = "boundary-secret-token-" + "0" * 20


def hierarchy(base: type[BaseException], module: str) -> list[type[BaseException]]:
    """``base`` and every subclass of it that ``module`` (or its submodules) defines."""
    found, stack = [], [base]
    while stack:
        cls = stack.pop()
        if cls.__module__.split(".")[0] == module and cls not in found:
            found.append(cls)
        stack.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


def make(cls: type[BaseException]) -> BaseException:
    """An instance of ``cls``, whatever its constructor wants."""
    request = httpx.Request("GET", "http://127.0.0.1/")
    for args, kwargs in (
        (("injected",), {}),
        (("injected",), {"request": request}),
        (("injected",), {"request": request, "response": httpx.Response(500, request=request)}),
        (("1 127.0.0.1:6379",), {}),
        ((), {}),
    ):
        try:
            return cls(*args, **kwargs)
        except (TypeError, ValueError):  # e.g. redis's AskError parses "slot host:port"
            continue
    raise AssertionError(f"cannot make a {cls}")


HTTPX_ERRORS = hierarchy(httpx.HTTPError, "httpx")
REDIS_ERRORS = hierarchy(redis.exceptions.RedisError, "redis")
PYJWT_ERRORS = hierarchy(jwt.PyJWTError, "jwt")
#: Answers a server could send that the json module cannot read, each a different error:
#: JSONDecodeError, UnicodeDecodeError (a ValueError), RecursionError.
UNREADABLE = [b"{not json", b"\xff\xfe\x00{", b"[" * 100_000, b"<html>proxy</html>"]
#: JSON, but not the object a route answers.
WRONG_SHAPE = [b"[]", b"null", b'"x"', b"42", b'{"token": 5}']


def failing(error: BaseException, *, coroutine: bool = False) -> Callable[..., Any]:
    """A stand-in for a library function that raises ``error`` (a coroutine function too)."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    async def fail_async(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail_async if coroutine else fail


def raising(error: BaseException) -> httpx.MockTransport:
    """A transport under which every request fails with ``error``."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return httpx.MockTransport(handler)


def answering(body: bytes, status: int = 200) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

    return httpx.MockTransport(handler)


def test_the_walk_finds_the_libraries_exceptions() -> None:
    assert {
        httpx.ConnectError,
        httpx.DecodingError,
        httpx.LocalProtocolError,
        httpx.TooManyRedirects,
        httpx.HTTPStatusError,
    } <= set(HTTPX_ERRORS)
    assert {
        redis.exceptions.AuthenticationError,
        redis.exceptions.ResponseError,
        redis.exceptions.ReadOnlyError,
    } <= set(REDIS_ERRORS)
    assert {jwt.InvalidKeyError, jwt.PyJWKError, jwt.InvalidAlgorithmError} <= set(PYJWT_ERRORS)
    print(
        f"\nwalked: httpx {len(HTTPX_ERRORS)}, redis {len(REDIS_ERRORS)}, "
        f"PyJWT {len(PYJWT_ERRORS)} exception classes"
    )


# -- httpx, and the answers it reads ----------------------------------------------------------


def exchange_with(transport: httpx.MockTransport, verification: str) -> UpstreamVerifier:
    settings = TokenExchange(
        issuer="http://127.0.0.1:9",
        verification=verification,
        allowed_audiences=[AUDIENCE],
        client_id="hub",
        client_secret="secret",
        negative_ttl=0.001,
    )
    checker = exchange_verifier(settings, LOG, sessions=Sessions())
    assert checker is not None
    checker._http = checker.provider.http = httpx.AsyncClient(transport=transport)
    return checker


@pytest.mark.parametrize("verification", ["introspection", "userinfo", "jwt"])
async def test_the_identity_provider_failing_is_a_503_each_time(verification: str) -> None:
    """Any httpx error, and any answer that is not JSON: temporarily_unavailable (503),
    counted as a provider error; nothing cached, so the next exchange asks again."""
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"  # JWT-shaped: jwt mode asks for keys
    transports = [raising(make(cls)) for cls in HTTPX_ERRORS]
    transports += [answering(body) for body in UNREADABLE]
    for n, transport in enumerate(transports, 1):
        checker = exchange_with(transport, verification)
        with pytest.raises(ExchangeError) as refused:
            await checker.identify(token)
        assert (refused.value.error, refused.value.status) == ("temporarily_unavailable", 503)
        assert token not in refused.value.description
        assert checker.stats()["provider_errors"] == 1, n
        await checker.close()


async def test_answers_of_the_wrong_shape_are_an_inactive_token_or_a_503() -> None:
    for body in WRONG_SHAPE:
        for verification in ("introspection", "userinfo", "jwt"):
            checker = exchange_with(answering(body), verification)
            with pytest.raises(ExchangeError) as refused:
                await checker.identify("opaque-token-value")
            assert refused.value.error in ("invalid_grant", "temporarily_unavailable")
            await checker.close()


async def test_the_replicas_call_to_the_hub() -> None:
    """Every httpx error is HubUnreachable (503); an answer it cannot read has no body."""
    forwarder = HubForwarder("http://127.0.0.1:9/hub/api", timeout=1, log=LOG)
    for cls in HTTPX_ERRORS:
        forwarder._http = httpx.AsyncClient(transport=raising(make(cls)))
        with pytest.raises(HubUnreachable) as failed:
            await forwarder.call("GET", "/stats", f"token {SECRET}")
        assert SECRET not in str(failed.value)
    for body in UNREADABLE:
        forwarder._http = httpx.AsyncClient(transport=answering(body))
        answer = await forwarder.call("GET", "/stats", f"token {SECRET}")
        assert answer.body is None and answer.message == "The hub answered 200"


def get_stats(hub: Hub) -> Any:
    return hub.get("token-cache/stats")


def open_events(hub: Hub) -> Any:
    with hub.stream("token-cache/events", read_timeout=1) as lines:
        return list(lines)


def test_the_command_lines_calls_to_the_hub() -> None:
    """A one-line error with the documented exit status, never "unexpected", never the token."""
    for cls in HTTPX_ERRORS:
        hub = Hub("http://127.0.0.1:9", SECRET, timeout=1)
        hub._client = httpx.Client(base_url=hub.url + "/", transport=raising(make(cls)))
        for call in (get_stats, open_events):
            with pytest.raises(CommandError) as failed:
                call(hub)
            assert failed.value.status in (UNREACHABLE, FAILED), cls
            assert SECRET not in failed.value.message
    for body in UNREADABLE + [b"[" * 100_000]:
        for status in (200, 400, 403):
            hub._client = httpx.Client(base_url=hub.url + "/", transport=answering(body, status))
            with pytest.raises(CommandError):
                hub.get("token-cache/stats")


async def test_the_notebook_client() -> None:
    """Refusals and unreadable answers are TokenCacheError; a failed request is the httpx
    error itself (the caller's own library), never anything else."""
    for cls in HTTPX_ERRORS:
        sync = TokenCacheClient("http://127.0.0.1:9/hub/api", SECRET)
        sync._http = httpx.Client(base_url=sync._calls.base_url, transport=raising(make(cls)))
        with pytest.raises(httpx.HTTPError):
            sync.get_notebook_token()
    for body in UNREADABLE + WRONG_SHAPE:
        for status in (200, 400, 403, 502):
            sync._http = httpx.Client(
                base_url=sync._calls.base_url, transport=answering(body, status)
            )
            with pytest.raises(TokenCacheError) as refused:
                sync.get_notebook_token()
            assert refused.value.status == status
            client = AsyncTokenCacheClient("http://127.0.0.1:9/hub/api", SECRET)
            client._http = httpx.AsyncClient(
                base_url=client._calls.base_url, transport=answering(body, status)
            )
            with pytest.raises(TokenCacheError):
                await client.get_internal_token("dask")


async def test_a_services_introspection_call() -> None:
    """CachedHubAuth's checker (services/): any httpx error, or an answer nested past the
    parser, is HubUnavailable (a 503 at the service); not JSON is an inactive token."""
    from jupyter_token_cache.services.checker import AnswerCache, HubUnavailable, TokenChecker
    from jupyter_token_cache.tokens.trust import RevocationState

    checker = TokenChecker(
        cache=AnswerCache(),
        state=RevocationState(),
        api_url="http://127.0.0.1:9/hub/api",
        api_token=SECRET,
        cache_ttl=1,
        negative_ttl=0.001,
        calls=asyncio.Semaphore(2),
        timeout=1,
        counts=Counter(),
        log=LOG,
    )
    for transport in [raising(make(cls)) for cls in HTTPX_ERRORS] + [answering(b"[" * 100_000)]:
        checker._http = httpx.AsyncClient(transport=transport)
        with pytest.raises(HubUnavailable):
            await checker.check("a-token-" + str(id(transport)))
    for body in UNREADABLE[:2] + WRONG_SHAPE:
        checker._http = httpx.AsyncClient(transport=answering(body))
        assert await checker.check("another-token-" + str(len(body))) is None
    await close_all()


# -- json, in the request parser both adapters share -------------------------------------------


@pytest.mark.parametrize("fields", [NOTEBOOK_FIELDS, INTERNAL_FIELDS])
def test_request_bodies_json_cannot_read_are_400(fields: tuple[str, ...]) -> None:
    bodies = [
        *UNREADABLE,
        b'{"a": 1, "a": 2}',
        b"\x00",
        "é".encode("utf-16"),
        b"[]",
        b'{"scopes": ["*"]}',
        b'{"scopes": ["a b"]}',
        b'{"service": 5}',
    ]
    for body in bodies:
        with pytest.raises(web.HTTPError) as refused:
            parse_body(body, fields)
        assert refused.value.status_code == 400 and refused.value.log_message, body[:20]


# -- PyJWT ------------------------------------------------------------------------------------


@pytest.fixture
def keyset() -> Iterator[KeySet]:
    yield from running_keyset()


async def test_every_pyjwt_error_is_an_invalid_token(
    keyset: KeySet, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = TokenExchange(
        issuer=keyset.issuer,
        jwks_uri=f"{keyset.url}/jwks",
        verification="jwt",
        allowed_audiences=[AUDIENCE],
    )
    good = keyset.sign(keyset.claims())
    for place in ("decode", "get_unverified_header", "PyJWK"):
        for cls in PYJWT_ERRORS:
            checker = exchange_verifier(settings, LOG, sessions=Sessions())
            assert checker is not None
            with monkeypatch.context() as patched:
                patched.setattr(jwt, place, failing(make(cls)))
                with pytest.raises(ExchangeError) as refused:
                    await checker.identify(good)
            assert refused.value.error == "invalid_grant", (place, cls)
            await checker.close()


# -- redis ------------------------------------------------------------------------------------


@pytest.mark.redis
async def test_every_redis_error_is_a_miss(redis_server: RedisServer, crypt_key: str) -> None:
    """The cache is an optimisation, never an authority: a Redis error is a miss, and the
    request goes on (the hub mints; the exchange and the services ask their authority)."""
    cache = TokenCache(
        backend="redis",
        url=redis_server.url,
        encryption_key=crypt_key,
        namespace="boundaries",
        operation_timeout=5.0,
    )
    key = CacheKey("alice", "notebook", ("s", None, "", ("read:users!user",)))
    assert await cache.set(key, ["value"], expires_at=None) is not False
    store = cache.store
    client = store._client
    created: list[int] = []

    async def create() -> tuple[Any, float | None]:
        created.append(1)
        return ["minted"], None

    for cls in REDIS_ERRORS:
        store._skip_until = 0.0  # no back-off: the next call reaches the client again
        client.execute_command = failing(make(cls), coroutine=True)
        try:
            assert await cache.get(key) is None, cls
            store._skip_until = 0.0
            value, made = await cache.get_or_create(key, create)
            assert (value, made) == (["minted"], True), cls
            store._skip_until = 0.0
            await cache.set(key, ["value"], expires_at=None)
            await cache.delete(key)
            await cache.clear("alice")
        finally:
            del client.execute_command
    assert len(created) == len(REDIS_ERRORS)
    assert cache.stats()["errors"] >= len(REDIS_ERRORS)
    await close_all()


def test_unavailable_is_what_callers_catch() -> None:
    """The exchange and the services catch Unavailable subclasses: CachedAnswers turns the
    walked httpx errors into one (see the tests above)."""
    from jupyter_token_cache.services.checker import HubUnavailable
    from jupyter_token_cache.upstream.verify import ProviderUnavailable

    assert issubclass(ProviderUnavailable, Unavailable) and issubclass(HubUnavailable, Unavailable)
