"""The lineage table: this extension's own table in the hub database, and how rows map to Lineage.

Notes
-----
Lineage used to travel in each token's note, signed with a key derived from the hub's
cookie secret and bound to the owner's name: a rename or a new cookie secret orphaned
every token minted before it. A table of our own depends on neither. It lives in the
hub's database (SQLite, PostgreSQL, MySQL alike) so that it commits in the same
transactions as the token rows it describes, and nothing a user can write reaches it.

There are no foreign keys to JupyterHub's tables on purpose: JupyterHub's migrations
rebuild tables on SQLite, and an ``ON DELETE CASCADE`` would silently empty this table.
Every row instead names its token, its session and its credential by id *and*
fingerprint, so a row left behind for a deleted token never matches the new token that
inherits its id (and is removed by the next sweep).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Unicode, insert, select
from sqlalchemy.engine import Engine

from ..tokens.lineage import Lineage
from ..tokens.models import TokenRef

#: Version of the tables below; a newer hub-side schema refuses to run an older extension.
SCHEMA_VERSION = 1

metadata = MetaData()

LINEAGE = Table(
    "jupyter_token_cache_lineage",
    metadata,
    Column("token_id", Integer, primary_key=True, autoincrement=False),
    Column("token_fp", String(64), nullable=False),
    Column("user_id", Integer, nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("session_kind", String(16), nullable=False),
    Column("session_ref", Unicode(320), nullable=False, index=True),
    Column("session_expires_at", Float),
    Column("root_id", Integer, index=True),
    Column("root_fp", String(64)),
    Column("via_id", Integer, index=True),
    Column("via_fp", String(64)),
    Column("session_id", Unicode(255)),
    Column("server", Unicode(255)),
    Column("service", Unicode(255)),
)

#: Which upstream (identity provider) session each subject token of the token exchange was
#: verified for: what revokes that session's hub tokens when the provider ends it. A row
#: lives until its token expires (see hub/upstream.py).
UPSTREAM = Table(
    "jupyter_token_cache_upstream",
    metadata,
    Column("token_digest", String(64), primary_key=True),
    Column("session_ref", Unicode(64), nullable=False),
    Column("username", Unicode(255), nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)

SCHEMA = Table(
    "jupyter_token_cache_schema",
    metadata,
    Column("version", Integer, nullable=False),
)


class SchemaError(RuntimeError):
    """The hub database holds a newer lineage schema than this extension knows."""


def create_tables(engine: Engine) -> None:
    """Create the tables if missing and record (or check) the schema version."""
    metadata.create_all(engine, checkfirst=True)
    with engine.begin() as conn:
        found = conn.execute(select(SCHEMA.c.version)).scalar()
        if found is None:
            conn.execute(insert(SCHEMA).values(version=SCHEMA_VERSION))
        elif found > SCHEMA_VERSION:
            raise SchemaError(
                f"The hub database has jupyter-token-cache schema {found}; this version knows "
                f"{SCHEMA_VERSION}. Upgrade jupyter-token-cache."
            )


def fingerprint(hashed: str | None) -> str:
    """A stable name for one token row, derived from its salted hash (unique per row)."""
    return hashlib.sha256((hashed or "").encode()).hexdigest()[:32]


def is_row(hashed: str | None, fp: str) -> bool:
    """True when the row whose hash is ``hashed`` is the row fingerprinted ``fp``."""
    return hashed is not None and hmac.compare_digest(fingerprint(hashed), fp)


def row_id(api_id: str) -> int | None:
    """JupyterHub's REST id "a123" -> 123."""
    if api_id.startswith("a") and api_id[1:].isdigit():
        return int(api_id[1:])
    return None


def ref_of(orm_token: Any) -> TokenRef:
    """The exact name of a token row."""
    return TokenRef(orm_token.api_id, fingerprint(orm_token.hashed))


def _ref(row_id_: int | None, fp: str | None) -> TokenRef | None:
    return None if row_id_ is None or fp is None else TokenRef(f"a{row_id_}", fp)


def to_row(ref: TokenRef, user_id: int, lineage: Lineage) -> dict[str, Any]:
    """The table row of ``lineage`` for the token ``ref`` of user ``user_id``."""
    return {
        "token_id": row_id(ref.id),
        "token_fp": ref.fp,
        "user_id": user_id,
        "kind": lineage.kind,
        "session_kind": lineage.session_kind,
        "session_ref": lineage.session_ref,
        "session_expires_at": lineage.session_expires_at,
        "root_id": lineage.root and row_id(lineage.root.id),
        "root_fp": lineage.root and lineage.root.fp,
        "via_id": lineage.via and row_id(lineage.via.id),
        "via_fp": lineage.via and lineage.via.fp,
        "session_id": lineage.session_id,
        "server": lineage.server,
        "service": lineage.service,
    }


def from_row(row: Any) -> Lineage:
    """The :class:`Lineage` a table row holds."""
    return Lineage(
        kind=row.kind,
        session_kind=row.session_kind,
        session_ref=row.session_ref,
        session_expires_at=row.session_expires_at,
        root=_ref(row.root_id, row.root_fp),
        via=_ref(row.via_id, row.via_fp),
        session_id=row.session_id,
        server=row.server,
        service=row.service,
    )
