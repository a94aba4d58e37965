"""What both REST adapters (in the hub, and the replicated service) share: bodies and answers.

Notes
-----
The token routes exist twice — ``/hub/api/token-cache/*`` inside the hub and
``/services/token-cache/*`` in ``jupyter-token-cache serve`` — and a caller must not be
able to tell them apart by how they parse a body or word a refusal. So the parsing and
the JSON answer live here, once, and both adapters' handlers call them.

Bodies are parsed here rather than with JupyterHub's ``get_json_body``, which logs a
body it cannot parse; a body is the caller's and may hold anything, secrets included.
Every refusal is a :class:`tornado.web.HTTPError`, which both adapters write as
``{"status": ..., "message": ...}``; messages name fields, scopes and services, never
a token.

What every route of both adapters refuses, here once:

- a parameter given more than once — a JSON key, a form field, a query parameter: no
  route takes a list that way, and reading one of the values (or none, as "absent")
  would answer another request than the one sent (RFC 6749 section 3.2 forbids repeats
  in OAuth requests; RFC 8693 allows several ``resource`` and ``audience`` values, but
  a hub token is for one service, so they are refused too, never narrowed to one);
- a scope that cannot be one (whitespace, a control character, not starting with a
  letter, as ``"*"``), which both adapters refuse before any cache sees it;
- a header value with control characters or non-ASCII text, which no route reads and
  no HTTP client library would pass on (:func:`header` treats it as absent).
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from typing import Any, NoReturn

from tornado import web

from .tokens.models import printable, shown

#: Longest minimum_lifetime worth asking for: ten years.
MAX_LIFETIME = 10 * 365 * 86400
_TYPES = {
    "minimum_lifetime": "a positive integer (seconds)",
    "service": "a service name",
    "scopes": "a non-empty list of scopes",
    "target": "a target name",
}
#: Longest token introspected: JupyterHub's are 32 hex characters; OAuth ones are longer.
MAX_INTROSPECTED = 255
#: Fields of each token route's body.
NOTEBOOK_FIELDS = ("minimum_lifetime",)
INTERNAL_FIELDS = ("service", "scopes", "minimum_lifetime")
UPSTREAM_FIELDS = ("target", "minimum_lifetime")
#: Query parameters of the admin listing (filters, JupyterHub's pagination) and reset.
LISTING_PARAMS = ("user", "kind", "service", "offset", "limit")
RESET_PARAMS = ("revoke",)


class Repeated(ValueError):
    """A JSON object names a key twice (which ``json.loads`` would settle by keeping the last)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            raise Repeated(name)
        found[name] = value
    return found


def load_json(raw: bytes) -> Any:
    """``raw`` as JSON; :class:`Repeated` for an object naming a key twice, at any depth."""
    return json.loads(raw, object_pairs_hook=_object)


def repeated(name: str, known: tuple[str, ...]) -> str:
    """The refusal of a parameter given more than once (its name shown only if it is ours)."""
    return f"{name if name in known else shown(name)} is given more than once"


def is_scope(value: str) -> bool:
    """Whether ``value`` can be a scope: it starts with a letter and holds no whitespace or
    control character (JupyterHub's own, custom ones and their filters all do)."""
    return value[:1].isascii() and value[:1].isalpha() and value.isprintable() and " " not in value


def parse_body(raw: bytes, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object in ``raw`` ({} when empty), with only ``allowed`` fields, each checked."""
    raw = raw.strip()
    if not raw:
        return {}
    try:
        body = load_json(raw)
    except Repeated as e:
        raise web.HTTPError(400, repeated(e.name, allowed)) from None
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPError(400, "Request body is not valid JSON") from None
    except RecursionError:  # "[" * 100_000: nested deeper than any request needs
        raise web.HTTPError(400, "Request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise web.HTTPError(400, "Request body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise web.HTTPError(
            400, f"Unknown field(s): {', '.join(map(shown, unknown[:5]))}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )  # fmt: skip
    return {name: _check(name, value) for name, value in body.items()}


def internal_body(raw: bytes) -> dict[str, Any]:
    """The body of ``POST /internal``: :func:`parse_body`, and ``service`` is required."""
    body = parse_body(raw, INTERNAL_FIELDS)
    if "service" not in body:
        raise web.HTTPError(400, "service is required")
    return body


def _check(name: str, value: Any) -> Any:
    ok = {
        "minimum_lifetime": lambda v: type(v) is int and 0 < v <= MAX_LIFETIME,
        "service": lambda v: isinstance(v, str) and 0 < len(v) <= 255,
        "target": lambda v: isinstance(v, str) and 0 < len(v) <= 255,
        "scopes": lambda v: isinstance(v, list) and 0 < len(v) <= 100
        and all(isinstance(s, str) and 0 < len(s) <= 255 for s in v),
    }[name](value)  # fmt: skip
    if not ok:
        raise web.HTTPError(400, f"{name} must be {_TYPES[name]}")
    if name == "scopes":  # the hub's own words for a scope it does not know
        for i, scope in enumerate(value):
            if not is_scope(scope):
                raise web.HTTPError(400, f"scopes[{i}] is not a known scope: {shown(scope)}")
    return value


def query(handler: web.RequestHandler, names: tuple[str, ...]) -> dict[str, str]:
    """The query parameters ``names`` the request gives (others are ignored), each once."""
    found = {}
    for name in names:
        values = handler.request.query_arguments.get(name, [])
        if len(values) > 1:
            raise web.HTTPError(400, repeated(name, names))
        if values:
            found[name] = handler.get_query_argument(name)
    return found


def header(handler: web.RequestHandler, name: str) -> str | None:
    """The request's header ``name``; None when absent or not printable ASCII.

    Tornado reads header bytes as Latin-1, so a value may hold any character; one that
    holds a control character or non-ASCII text is no value any route here reads (a
    token, a media type, an event id), and an HTTP client library would refuse to send
    it on, with an error echoing it. Treated as absent, it is answered as the hub
    answers a request without it.
    """
    value = handler.request.headers.get(name)
    return value if value is not None and printable(value) else None


def allowed_methods(handler: type[web.RequestHandler]) -> list[str]:
    """The HTTP methods ``handler`` implements (of those the token routes use)."""
    return [m for m in ("GET", "POST", "DELETE")
            if getattr(handler, m.lower()) is not getattr(web.RequestHandler, m.lower())]  # fmt: skip


def with_message(handler: web.RequestHandler, status_code: int, exc_info: Any) -> Any:
    """``exc_info`` with a message where Tornado raised none (a wrong method, no route).

    A 405 names the methods allowed, in the message and in the ``Allow`` header as RFC
    9110 asks; a 404 names the path unless it looks like a secret. Anything else is
    returned as it is.
    """
    error = exc_info[1] if exc_info else None
    if not isinstance(error, web.HTTPError) or error.log_message:
        return exc_info
    if status_code == 405:
        allowed = ", ".join(allowed_methods(type(handler)))
        handler.set_header("Allow", allowed)
        message = f"{handler.request.method} is not allowed here; use {allowed}"
    elif status_code == 404:
        message = f"No token-cache route at {shown(handler.request.path)}"
    else:
        return exc_info
    replaced = web.HTTPError(status_code, message.replace("%", "%%"))
    return (type(replaced), replaced, exc_info[2])


def error_message(body: Any) -> str:
    """The ``message`` of a JupyterHub JSON error body (``{"status", "message"}``), or "".

    For the hub's callers in this package (the replicated service, the command line);
    the notebook client has its own reading, as it imports nothing but httpx.
    """
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else ""


def json_error(handler: web.RequestHandler, status: int, message: str, error: str | None) -> None:
    """Finish ``handler`` with JupyterHub's JSON error, and ``error``: the OAuth code a client
    acts on, where there is one (``login_required``, ``temporarily_unavailable``)."""
    handler.set_status(status)
    if status == 503:
        handler.set_header("Retry-After", "5")
    body: dict[str, Any] = {"status": status, "message": message}
    if error:
        body["error"] = error
    write_json(handler, body)


def write_json(handler: web.RequestHandler, model: dict[str, Any] | list[Any]) -> None:
    """Finish ``handler`` with ``model`` as JSON that no cache in between may keep."""
    handler.set_header("Content-Type", "application/json; charset=UTF-8")
    handler.set_header("Cache-Control", "no-store")
    handler.finish(json.dumps(model))


# -- OAuth routes (RFC 7662 introspection, RFC 8693 exchange) ---------------------------


def form_or_json(handler: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The named parameters of a JSON or form body (None when absent); 400 for any other body.

    OAuth routes (RFC 7662 introspection, RFC 8693 exchange) take form-encoded bodies;
    JSON is accepted too. A parameter given more than once is refused with
    ``invalid_request`` (RFC 6749 section 3.2 forbids repeats; see the module's notes);
    one sent without a value counts as absent, as that section says. Malformed bodies
    get RFC 6749's error form.
    """
    raw = handler.request.body
    kind = (header(handler, "Content-Type") or "").partition(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            pairs = urllib.parse.parse_qsl(
                raw.decode("ascii"), keep_blank_values=True, strict_parsing=bool(raw)
            )
        except (UnicodeDecodeError, ValueError):
            rfc_error(handler, "invalid_request", "The form body is malformed")
        form: dict[str, str] = {}
        for name, value in pairs:
            if name in form:
                rfc_error(handler, "invalid_request", repeated(name, names))
            form[name] = value
        return {name: form.get(name) or None for name in names}
    try:
        body = load_json(raw) if raw.strip() else {}
    except Repeated as e:
        rfc_error(handler, "invalid_request", repeated(e.name, names))
    except (ValueError, UnicodeDecodeError, RecursionError):
        rfc_error(
            handler,
            "invalid_request",
            "The body is neither JSON nor application/x-www-form-urlencoded",
        )
    if not isinstance(body, dict):
        body = {}
    return {name: body.get(name) for name in names}


def rfc_error(handler: Any, error: str, description: str, status: int = 400) -> NoReturn:
    """Answer in RFC 6749 section 5.2's error form and end the request."""
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json; charset=UTF-8")
    handler.set_header("Cache-Control", "no-store")
    handler.finish(json.dumps({"error": error, "error_description": description}))
    raise web.Finish()


def introspected_token(handler: Any) -> str:
    """The ``token`` of an introspection request, or a random one in its place.

    A token that is absent, empty, huge or not ASCII is replaced by a random one of the
    usual length, which is then looked up like any other: every inactive answer looks
    and costs the same, so neither its status nor its timing tells a malformed token
    from an unknown, expired or deleted one.
    """
    token = form_or_json(handler, ("token",))["token"]
    if isinstance(token, str) and 0 < len(token) <= MAX_INTROSPECTED and token.isascii():
        return token
    return secrets.token_hex(16)
