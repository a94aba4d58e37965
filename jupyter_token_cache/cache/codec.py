"""Sealing cache entries for shared backends: HMAC-derived key names and Fernet envelopes.

Whoever can read a shared Redis or memcached must learn nothing from it, and whoever can
write to it must not be able to make the hub run code or serve a token it did not cache.
So key names are HMAC-SHA256 of the identifiers, values are JSON (never pickle) inside a
Fernet token, and the envelope names the key it was written for, so a value copied to
another key does not open there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_ENV = "JUPYTERHUB_CRYPT_KEY"


class EncryptionKeyError(ValueError):
    """An encryption key is missing or malformed."""


def parse_key(key: str | bytes) -> bytes:
    """Return the 32 raw bytes of a key given as base64 (44 chars), hex (64 chars) or raw.

    The formats are the ones ``JUPYTERHUB_CRYPT_KEY`` accepts, so one key (or one
    ``;``-separated list) can serve both the hub and the cache.
    """
    raw = key.encode("ascii") if isinstance(key, str) else key
    raw = raw.strip()
    if len(raw) == 44:
        try:
            raw = base64.urlsafe_b64decode(raw)
        except (binascii.Error, ValueError):
            pass
    elif len(raw) == 64:
        try:
            raw = binascii.unhexlify(raw)
        except (binascii.Error, ValueError):
            pass
    if len(raw) != 32:
        raise EncryptionKeyError(
            "Token cache encryption keys must be 32 bytes, hex- or base64-encoded "
            "(generate one with `openssl rand -hex 32`)."
        )
    return raw


def parse_keys(spec: str | Iterable[str | bytes] | None) -> list[bytes]:
    """Parse keys given as a ``;``-separated string or a list; the first one encrypts."""
    if not spec:
        return []
    items = spec.split(";") if isinstance(spec, str) else list(spec)
    return [parse_key(item) for item in items if item and str(item).strip()]


def keys_from_environment() -> list[bytes]:
    """Keys from ``JUPYTERHUB_CRYPT_KEY``, as JupyterHub itself reads them."""
    return parse_keys(os.environ.get(KEY_ENV, ""))


class Codec:
    """Derive key names and seal values with a list of keys (the first one encrypts).

    Notes
    -----
    Key names are derived from the *last* key in the list through HKDF, not from the
    first: rotating by putting a new key in front (as JupyterHub documents for
    ``JUPYTERHUB_CRYPT_KEY``) keeps every name, so old entries still resolve and decrypt
    with the old key while new ones are encrypted with the new key. Dropping the last
    key changes the names, which simply empties the cache.
    """

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise EncryptionKeyError("At least one encryption key is required.")
        self._fernet = MultiFernet([Fernet(base64.urlsafe_b64encode(k)) for k in keys])
        secret = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"jupyter-token-cache names"
        ).derive(keys[-1])
        self._hmac = hmac.new(secret, digestmod=hashlib.sha256)

    def name(self, *identifiers: Any) -> str:
        """Return the hex HMAC of the identifiers, JSON-encoded so no two tuples collide."""
        mac = self._hmac.copy()
        mac.update(json.dumps(identifiers, separators=(",", ":")).encode())
        return mac.hexdigest()

    def seal(self, payload: dict[str, Any]) -> str:
        """Return the Fernet token (ASCII) of the JSON payload."""
        return self._fernet.encrypt(json.dumps(payload, separators=(",", ":")).encode()).decode()

    def open(self, sealed: str | bytes) -> dict[str, Any] | None:
        """Return the payload, or None when no key opens it or it is not ours."""
        try:
            payload = json.loads(self._fernet.decrypt(sealed))
        except (InvalidToken, ValueError, TypeError):
            return None
        return payload if isinstance(payload, dict) else None
