"""A provider's published keys (JWKS) of every key type, served over real HTTP, and forged JWTs.

The test provider (``provider.mjs``) signs with one RSA key and always names it with a
``kid``. Tokens signed with other key types, headers naming another key type than the
one they are signed with, and a key set whose key has no ``kid`` (optional in RFC 7517)
need a key set of the test's own: :class:`KeySet` holds RSA, EC (P-256, P-384, P-521)
and Ed25519 keys and serves their public halves at ``{url}/jwks`` from a thread of
this process (``c.TokenExchange.jwks_uri`` points there; no discovery is needed).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

#: Key name -> (JWK kty/crv, the algorithm it signs with).
KEYS: dict[str, tuple[str, str]] = {
    "rsa": ("RSA", "RS256"),
    "ec256": ("EC P-256", "ES256"),
    "ec384": ("EC P-384", "ES384"),
    "ec521": ("EC P-521", "ES512"),
    "ed25519": ("OKP Ed25519", "EdDSA"),
}
#: Every JWS algorithm a header may name (the accepted ones, the refused ones and nonsense).
ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "HS256",
    "none",
    "ES256K",
    "",
    "rs256",
]
AUDIENCE = "jupyterhub"


def _private(name: str) -> Any:
    if name == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if name == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    curve = {"ec256": ec.SECP256R1(), "ec384": ec.SECP384R1(), "ec521": ec.SECP521R1()}[name]
    return ec.generate_private_key(curve)


def public_jwk(key: Any) -> dict[str, Any]:
    """The public JWK of a private key of any of the kinds above."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return RSAAlgorithm.to_jwk(public, as_dict=True)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(public, as_dict=True)
    return OKPAlgorithm.to_jwk(public, as_dict=True)


class KeySet:
    """Private keys of every type; their public JWKS served at ``{url}/jwks``.

    ``kids`` says which keys the published set names with a ``kid`` (default: all, as
    ``kid = key name``); ``published`` which keys it holds at all.
    """

    def __init__(self, *, published: tuple[str, ...] = tuple(KEYS), kids: bool = True) -> None:
        self.keys = {name: _private(name) for name in KEYS}
        #: A key the provider never published (a forger's).
        self.foreign = {name: _private(name) for name in KEYS}
        self.published = published
        self.kids = kids
        self.requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def issuer(self) -> str:
        return self.url

    def document(self) -> dict[str, Any]:
        keys = []
        for name in self.published:
            jwk = {**public_jwk(self.keys[name]), "use": "sig", "alg": KEYS[name][1]}
            if self.kids:
                jwk["kid"] = name
            keys.append(jwk)
        return {"keys": keys}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        keyset = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                keyset.requests += 1
                if self.path != "/jwks":
                    self.send_error(404)
                    return
                body = json.dumps(keyset.document()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> KeySet:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def claims(self, user: str = "alice", **more: Any) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": user,
            "preferred_username": user,
            "iat": now,
            "exp": now + 3600,
            **more,
        }

    def sign(
        self, claims: dict[str, Any], key: str = "rsa", *, foreign: bool = False, **header: Any
    ) -> str:
        """A JWT signed with ``key`` (a published one, or a forger's of that type).

        The header is the key's own algorithm and kid unless ``header`` says otherwise
        (``kid=None`` leaves the kid out); it is written as given, whatever it holds (a
        ``kid`` that is not a string, ``jku``, ``jwk``...), and the signature is made
        over it with the key's own algorithm, whatever the header names.
        """
        private = (self.foreign if foreign else self.keys)[key]
        alg = KEYS[key][1]
        fields = {"typ": "JWT", "alg": alg, "kid": key, **header}
        fields = {k: v for k, v in fields.items() if v is not None}
        signing = b".".join(
            jwt.utils.base64url_encode(json.dumps(part, separators=(",", ":")).encode())
            for part in (fields, claims)
        )
        signature = jwt.get_algorithm_by_name(alg).sign(signing, private)
        return (signing + b"." + jwt.utils.base64url_encode(signature)).decode()


def running_keyset(**options: Any) -> Iterator[KeySet]:
    """A started :class:`KeySet`, stopped afterwards (for fixtures)."""
    keyset = KeySet(**options).start()
    try:
        yield keyset
    finally:
        keyset.stop()
