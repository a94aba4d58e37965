"""The exchange's upstream sessions, recorded in the hub database (``jupyter_token_cache_upstream``).

Notes
-----
When the identity provider calls a subject token inactive, the hub must know which
upstream session that token was verified for, to revoke the hub tokens minted for the
session (their lineage rows name it). The provider's inactive answer names no session,
so the hub records it when the token is first seen active: here, beside the lineage
table, in the same database — not in a cache, which may evict the record, be switched
off, or lose it when a memory backend's hub restarts.

Every write is bounded: one row per provider answer (hits of the answer cache write
nothing), and at most :data:`PURGE_BATCH` expired rows removed with it, so the table holds
about as many rows as there are live subject tokens without any sweep of its own.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, insert, select, update

from .lineage import UPSTREAM

#: Expired rows removed with each write, at most.
PURGE_BATCH = 100


class UpstreamSessionTable:
    """:class:`~jupyter_token_cache.upstream.exchange.UpstreamSessions` in the hub database.

    ``keep`` is how long a row lives when the provider gives no expiry: as long as any
    hub token minted for it may (the longest lifetime of the token policy).
    """

    def __init__(self, db: Any, *, keep: float) -> None:
        self.db = db
        self.keep = keep

    def seen(self, name: str, session: str, username: str, expires_at: float | None) -> None:
        now = time.time()
        values = {
            "session_ref": session,
            "username": username,
            "expires_at": expires_at if expires_at is not None else now + self.keep,
        }
        db = self.db
        table = UPSTREAM
        if db.execute(select(table.c.token_digest).where(table.c.token_digest == name)).first():
            db.execute(update(table).where(table.c.token_digest == name).values(**values))
        else:
            db.execute(insert(table).values(token_digest=name, **values))
        expired = select(table.c.token_digest).where(table.c.expires_at < now).limit(PURGE_BATCH)
        names = [row[0] for row in db.execute(expired)]
        if names:
            db.execute(delete(table).where(table.c.token_digest.in_(names)))
        db.commit()

    def ended(self, name: str) -> tuple[str, str, float | None] | None:
        table = UPSTREAM
        row = self.db.execute(select(table).where(table.c.token_digest == name)).first()
        if row is None:
            return None
        self.db.execute(delete(table).where(table.c.token_digest == name))
        self.db.commit()
        return row.session_ref, row.username, row.expires_at
