"""A real OpenID Connect provider (oidc-provider on node) on a free loopback port, and its flows.

The provider is panva's certified ``oidc-provider`` (tests/oidc/package.json, installed
by ``./run test`` with ``npm ci``). Tokens come from its real flows: the authorization
code flow with PKCE, its development login and consent pages driven over HTTP; they are
revoked at its real revocation endpoint. Its signing key is made here and handed to it,
so it survives a restart and tests can forge tokens with it (a wrong ``iss``, ``aud``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from traitlets.config import Config

from ..servers import MissingBinary, Server

HERE = Path(__file__).resolve().parent
REDIRECT = "http://127.0.0.1/callback"
WEBAPP = ("webapp", "webapp-secret")
#: The client the hub introspects as.
HUB_CLIENT = ("jupyterhub", "hub-secret")


def trust(config: Config, provider: OIDCProvider) -> None:
    """Hub settings that exchange ``provider``'s tokens (introspected as the hub's client)."""
    exchange = config.TokenExchange
    exchange.issuer = provider.issuer
    exchange.client_id, exchange.client_secret = HUB_CLIENT
    exchange.allowed_audiences = ["jupyterhub"]


class OIDCProvider(Server):
    """``node provider.mjs``; ``requests()`` counts what it was asked, by "METHOD /path"."""

    binary = "node"
    package = "nodejs"
    scheme = "http"
    start_timeout = 20.0

    def __init__(self, short_ttl: int = 3) -> None:
        super().__init__()
        if not (HERE / "node_modules" / "oidc-provider").is_dir():
            raise MissingBinary(
                f"oidc-provider is not installed (npm ci in {HERE}; ./run test does)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="oidc-"))
        self.log = self.dir / "requests.log"
        self.log.touch()
        self.rotate_key()
        self.short_ttl = short_ttl

    def rotate_key(self) -> None:
        """A new signing key (and key id), used from the next start."""
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        jwk = RSAAlgorithm.to_jwk(self.private_key, as_dict=True)
        (self.dir / "key.json").write_text(json.dumps({**jwk, "kid": self.kid, "alg": "RS256",
                                                       "use": "sig"}))  # fmt: skip

    @property
    def issuer(self) -> str:
        return self.url

    def command(self) -> list[str]:
        return [self.path, str(HERE / "provider.mjs")]

    def popen_options(self) -> dict[str, Any]:
        env = {**os.environ, "PORT": str(self.port), "KEY_FILE": str(self.dir / "key.json"),
               "LOG_FILE": str(self.log), "SHORT_TTL": str(self.short_ttl)}  # fmt: skip
        return {"env": env}

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def requests(self, what: str | None = None) -> int:
        """How many requests the provider has had (those whose "METHOD /path" starts with ``what``)."""
        lines = self.log.read_text().splitlines()
        return sum(1 for line in lines if what is None or line.startswith(what))

    def introspections(self) -> int:
        return self.requests("POST /token/introspection")

    # -- the provider's real flows ------------------------------------------------------

    def token(self, user: str, resource: str = "urn:hub:opaque") -> str:
        """An access token for ``user`` through the authorization code flow (PKCE)."""
        with httpx.Client(base_url=self.url, timeout=10) as client:
            return self._code_flow(client, user, resource)

    def tokens_of_one_login(self, user: str, resource: str, count: int = 2) -> list[str]:
        """``count`` access tokens of one login session at the provider (one ``sid``), as an
        application refreshing its token gets them: each issued a second after the last, so
        each expires later."""
        found = []
        with httpx.Client(base_url=self.url, timeout=10) as browser:  # one session cookie
            for n in range(count):
                if n:
                    time.sleep(1.1)
                found.append(self._code_flow(browser, user, resource))
        return found

    def _code_flow(self, client: httpx.Client, user: str, resource: str) -> str:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        params = {
            "client_id": WEBAPP[0], "response_type": "code", "redirect_uri": REDIRECT,
            "scope": "openid profile hub", "state": secrets.token_hex(8),
            "code_challenge": challenge.decode().rstrip("="), "code_challenge_method": "S256",
        }  # fmt: skip
        if resource:
            params["resource"] = resource
        location = client.get("/auth", params=params).headers["location"]
        for _ in range(10):
            if location.startswith(REDIRECT):
                query = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
                if "code" not in query:
                    raise RuntimeError(f"authorization refused: {query.get('error')}")
                break
            path = urllib.parse.urlparse(location).path
            if path.startswith("/interaction/"):
                page = client.get(path).text
                prompt = "login" if 'value="login"' in page else "consent"
                form = {"prompt": prompt, "login": user, "password": "any"}
                location = client.post(path, data=form).headers["location"]
            else:
                location = client.get(location).headers["location"]
        else:
            raise RuntimeError("the authorization flow did not end")
        answer = client.post("/token", auth=WEBAPP, data={
            "grant_type": "authorization_code", "code": query["code"][0],
            "redirect_uri": REDIRECT, "code_verifier": verifier,
        })  # fmt: skip
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def revoke(self, token: str) -> None:
        """Revoke ``token`` at the provider's revocation endpoint (RFC 7009)."""
        response = httpx.post(f"{self.url}/token/revocation", auth=WEBAPP,
                              data={"token": token, "token_type_hint": "access_token"})  # fmt: skip
        response.raise_for_status()

    def forge(self, claims: dict[str, Any], **header: Any) -> str:
        """A JWT signed with the provider's own key (for claims it would never issue)."""
        return jwt.encode(claims, self.private_key, algorithm="RS256",
                          headers={"kid": self.kid, **header})  # fmt: skip
