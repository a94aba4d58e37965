"""Every response of the REST API checked against the OpenAPI document the docs render."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import yaml
from jsonschema import Draft202012Validator

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "_static" / "rest-api.yml"
_ROUTES = [
    (re.compile(r"/token-cache/notebook$"), "/token-cache/notebook"),
    (re.compile(r"/token-cache/internal$"), "/token-cache/internal"),
    (re.compile(r"/token-cache/stats$"), "/token-cache/stats"),
    (re.compile(r"/token-cache/tokens$"), "/token-cache/tokens"),
    (re.compile(r"/token-cache/introspect$"), "/token-cache/introspect"),
    (re.compile(r"/token-cache/exchange$"), "/token-cache/exchange"),
    (re.compile(r"/token-cache/upstream$"), "/token-cache/upstream"),
    (re.compile(r"/token-cache/users/[^/]+$"), "/token-cache/users/{name}"),
    (re.compile(r"/token-cache/resets/[^/]+$"), "/token-cache/resets/{id}"),
    (re.compile(r"/token-cache$"), "/token-cache"),
]


@cache
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def check(method: str, path: str, status: int, body: Any) -> None:
    """Raise AssertionError unless (path, method, status, body) is what the document says."""
    template = next((t for pattern, t in _ROUTES if pattern.search(path)), None)
    if template is None or "/api/token-cache" not in path:
        return  # not ours (the admin page, /hub/token-cache, is HTML)
    operation = spec()["paths"][template].get(method.lower())
    if operation is None and status == 405:
        return  # an undocumented method, refused: as it should be
    assert operation is not None, f"{method} {template} is not documented"
    response = operation["responses"].get(str(status))
    assert response is not None, f"{method} {template} answered {status}, which is not documented"
    schema = _resolve(response)["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": spec()["components"]})
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, f"{method} {template} {status}: {errors[0].message}"


async def check_response(response: httpx.Response) -> None:
    """httpx response hook: validate REST API answers as they arrive."""
    await response.aread()
    if "/api/token-cache" not in response.request.url.path:
        return
    check(response.request.method, response.request.url.path, response.status_code, response.json())
