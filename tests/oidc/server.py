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
#: The client the hub's GenericOAuthenticator logs users in as (refresh tokens, rotated).
HUB_LOGIN = ("hub-login", "hub-login-secret")
#: What the hub's GenericOAuthenticator asks for at login (every target's scopes too) and
#: where the provider sends it back (any loopback port: the client is a native one).
HUB_SCOPES = "openid profile offline_access s3:read s3:write api:read api:write"
HUB_REDIRECT = "http://127.0.0.1:1/hub/oauth_callback"
#: The provider's line for a grant it revoked (a spent refresh token presented again).
GRANT_REVOKED = "GRANT-REVOKED"


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

    def __init__(
        self,
        short_ttl: int = 3,
        *,
        hub_access_ttl: int = 3600,
        target_ttl: int = 600,
        persist: bool = False,
        clock_tolerance: int = 15,
    ) -> None:
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
        #: Lifetimes of the hub-login client's access tokens and of target tokens.
        self.hub_access_ttl, self.target_ttl = hub_access_ttl, target_ttl
        #: How long past its expiry the provider's userinfo still takes an access token
        #: (oidc-provider's clockTolerance, 15 s by default); introspection takes none.
        self.clock_tolerance = clock_tolerance
        #: Where the provider keeps its grants and tokens across restarts (None: memory only).
        self.store = self.dir / "store.jsonl" if persist else None

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
        env = {
            **os.environ,
            "PORT": str(self.port),
            "KEY_FILE": str(self.dir / "key.json"),
            "LOG_FILE": str(self.log),
            "SHORT_TTL": str(self.short_ttl),
            "HUB_ACCESS_TTL": str(self.hub_access_ttl),
            "TARGET_TTL": str(self.target_ttl),
            "CLOCK_TOLERANCE": str(self.clock_tolerance),
        }
        if self.store is not None:
            env["STORE_FILE"] = str(self.store)
        return {"env": env}

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def requests(self, what: str | None = None) -> int:
        """How many requests the provider has had (those whose "METHOD /path" starts with ``what``)."""
        lines = self.log.read_text().splitlines()
        return sum(
            1
            for line in lines
            if (what is None and line != GRANT_REVOKED) or (what and line.startswith(what))
        )

    def introspections(self) -> int:
        return self.requests("POST /token/introspection")

    # -- the provider's real flows ------------------------------------------------------

    def token(self, user: str, resource: str = "urn:hub:opaque") -> str:
        """An access token for ``user`` through the authorization code flow (PKCE)."""
        with httpx.Client(base_url=self.url, timeout=10) as client:
            return str(self._code_flow(client, user, resource))

    def tokens_of_one_login(self, user: str, resource: str, count: int = 2) -> list[str]:
        """``count`` access tokens of one login session at the provider (one ``sid``), as an
        application refreshing its token gets them: each issued a second after the last, so
        each expires later."""
        found = []
        with httpx.Client(base_url=self.url, timeout=10) as browser:  # one session cookie
            for n in range(count):
                if n:
                    time.sleep(1.1)
                found.append(str(self._code_flow(browser, user, resource)))
        return found

    def login_response(self, user: str) -> dict[str, Any]:
        """The token endpoint's answer to a login of ``user`` by the hub's client "hub-login"
        (access, refresh and ID tokens), as GenericOAuthenticator receives it."""
        with httpx.Client(base_url=self.url, timeout=10) as client:
            return self._code_flow(client, user, "", HUB_LOGIN, HUB_SCOPES, HUB_REDIRECT)

    def login_state(self, user: str) -> dict[str, Any]:
        """The auth state GenericOAuthenticator keeps for a login of ``user`` (its
        ``build_auth_state_dict``), for tests of the upstream tokens without a hub."""
        answer = self.login_response(user)
        return {
            "access_token": answer["access_token"],
            "refresh_token": answer.get("refresh_token"),
            "id_token": answer.get("id_token"),
            "scope": answer.get("scope", "").split(" "),
            "token_response": answer,
            "oauth_user": {"sub": user, "preferred_username": user},
        }

    def _code_flow(
        self,
        client: httpx.Client,
        user: str,
        resource: str,
        app: tuple[str, str] = WEBAPP,
        scope: str = "openid profile hub",
        redirect: str = REDIRECT,
    ) -> Any:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        params = {
            "client_id": app[0], "response_type": "code", "redirect_uri": redirect,
            "scope": scope, "state": secrets.token_hex(8),
            "code_challenge": challenge.decode().rstrip("="), "code_challenge_method": "S256",
        }  # fmt: skip
        if resource:
            params["resource"] = resource
        location = client.get("/auth", params=params).headers["location"]
        for _ in range(10):
            if location.startswith(redirect):
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
        answer = client.post(
            "/token",
            auth=app,
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": redirect,
                "code_verifier": verifier,
            },
        )
        answer.raise_for_status()
        return answer.json() if app == HUB_LOGIN else str(answer.json()["access_token"])

    def log_in(self, hub_url: str, user: str) -> httpx.Client:
        """A browser-like client logged in to the hub at ``hub_url`` as ``user`` through this
        provider's own pages (the hub's GenericOAuthenticator as the client "hub-login").

        It follows the hub's login redirect to the provider, fills in the provider's login
        page (any name, any password) and consent page, and follows the provider's redirect
        back to the hub's callback, which sets the hub's cookies. The client's ``X-XSRFToken``
        header is set for cookie-authenticated API requests.
        """
        client = httpx.Client(timeout=30)
        response = client.get(f"{hub_url}/hub/oauth_login")
        for _ in range(20):
            if response.status_code not in (301, 302, 303, 307, 308):
                break
            location = urllib.parse.urljoin(str(response.url), response.headers["location"])
            if urllib.parse.urlparse(str(response.url)).path.endswith("/hub/oauth_callback"):
                break  # the hub has set its cookies
            path = urllib.parse.urlparse(location).path
            if location.startswith(self.url) and path.startswith("/interaction/"):
                page = client.get(location).text
                prompt = "login" if 'value="login"' in page else "consent"
                form = {"prompt": prompt, "login": user, "password": "any"}
                response = client.post(location, data=form)
            else:
                response = client.get(location)
        else:
            raise RuntimeError("the login did not end")
        if response.status_code >= 400:
            raise RuntimeError(f"the login failed: {response.status_code} {response.text[:500]}")
        client.get(f"{hub_url}/hub/home")
        client.headers["X-XSRFToken"] = client.cookies.get("_xsrf", "")
        return client

    def revoke(self, token: str) -> None:
        """Revoke ``token`` at the provider's revocation endpoint (RFC 7009)."""
        response = httpx.post(f"{self.url}/token/revocation", auth=WEBAPP,
                              data={"token": token, "token_type_hint": "access_token"})  # fmt: skip
        response.raise_for_status()

    def forge(self, claims: dict[str, Any], **header: Any) -> str:
        """A JWT signed with the provider's own key (for claims it would never issue)."""
        return jwt.encode(claims, self.private_key, algorithm="RS256",
                          headers={"kid": self.kid, **header})  # fmt: skip
