"""Where a minted token comes from, written into its note and signed, so it survives restarts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from .models import ParentSession

#: Every note of a token this extension minted starts with this.
NOTE_PREFIX = "jupyter-token-cache"
_TAG = re.compile(r" \[jtc1 ([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\]$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Lineage:
    """Sign and read the origin of minted tokens.

    Notes
    -----
    A token minted by the cache carries, in its note, the session it was minted for
    (an HMAC-derived reference, never a raw id), that session's kind and expiry, the
    server it belongs to and the service it is for, with an HMAC over all of it and the
    owner's name. The hub database is then the record of lineage: after a restart, a
    cache reset or on a second hub process, a minted token used as a credential still
    resolves to its original session, and stopping a server still finds every token
    minted for it.

    Users can write any note on tokens they create, so an unsigned note would let a
    user pass a token off as, say, a server's session. The signature is keyed by the
    hub's cookie secret and binds the owner, so a note copied onto another user's token
    or edited by hand is ignored; copying one onto one's own token gains nothing, since
    a child never gets more than the credential's own scopes or the original expiry.
    """

    def __init__(self, secret: bytes) -> None:
        self._ref_key = hmac.new(secret, b"jupyter-token-cache session ref", hashlib.sha256).digest()
        self._mac_key = hmac.new(secret, b"jupyter-token-cache lineage", hashlib.sha256).digest()

    def session_ref(self, raw: str) -> str:
        """An opaque, stable reference for a raw session identifier."""
        return hmac.new(self._ref_key, raw.encode(), hashlib.sha256).hexdigest()[:32]

    def _mac(self, user: str, payload: str) -> str:
        message = json.dumps([user, payload]).encode()
        return _b64(hmac.new(self._mac_key, message, hashlib.sha256).digest())

    def note(self, session: ParentSession, *, minted: str, service: str | None = None) -> str:
        """The note for a token minted for ``session``: readable first, signed lineage last."""
        fields = {
            "t": minted,
            "r": session.ref,
            "p": session.expires_at,
            "k": session.kind,
            "n": session.server,
            "s": service,
        }
        payload = _b64(json.dumps(fields, separators=(",", ":")).encode())
        label = f"{NOTE_PREFIX}: {minted} token" + (f" for {service}" if service else "")
        return f"{label} [jtc1 {payload}.{self._mac(session.user, payload)}]"

    def read(self, user: str, note: str | None) -> dict[str, Any] | None:
        """The signed fields of a note, or None when it is not a genuine one for ``user``."""
        if not note or not note.startswith(NOTE_PREFIX):
            return None
        match = _TAG.search(note)
        if match is None:
            return None
        payload, mac = match.groups()
        if not hmac.compare_digest(mac, self._mac(user, payload)):
            return None
        try:
            fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return fields if isinstance(fields, dict) else None

    def parent(self, fields: dict[str, Any], *, user: str, scopes: frozenset[str],
               session_id: str | None) -> ParentSession:
        """The original session of a minted credential, limited to the credential's scopes."""
        return ParentSession(
            user=user,
            ref=fields["r"],
            kind=fields["k"],
            expires_at=fields["p"],
            scopes=scopes,
            session_id=session_id,
            server=fields.get("n"),
            minted=fields["t"],
        )
