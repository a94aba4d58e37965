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
inherits its id (and is removed by the next sweep, or replaced by the mint that gets
the id).

Each row also holds its token's expiry (JupyterHub never changes it), so the admin
listing can filter, order, page and count live tokens on this table and one narrow
index alone, joining the token table for the rows of one page only. Schema 2 added it;
:func:`create_tables` upgrades a schema-1 table in place (``create_all`` creates missing
tables, never missing columns or indexes).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from jupyterhub import orm
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Unicode,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateColumn

from ..times import epoch_seconds
from ..tokens.lineage import Lineage
from ..tokens.models import TokenRef

#: Version of the tables below; a newer hub-side schema refuses to run an older extension.
SCHEMA_VERSION = 2

#: Most ids in one ``IN`` list, and most rows one step of a walk over the tables handles
#: between two turns of the hub's event loop: a few milliseconds of work on a small
#: machine (the scale benchmark measures it). SQLite allows 999 bound parameters before
#: 3.32 (32,766 since), psycopg 3 65,535; two such lists in one statement stay far below.
BATCH = 50
#: Tokens one step of a revocation deletes (a reset, a user's or a server's tokens): each
#: costs more than a row walked (its row read and deleted, its lineage, its event, its
#: cache entry), up to 38 ms of CPU for 50 at 100,000 tokens on the benchmark machine,
#: which with a busy machine's waits held the loop past 50 ms; 25 hold it about half that.
REVOKE_BATCH = 25
#: Seconds the rest of the hub gets between two such steps (see observer.pause).
PAUSE = 0.005

metadata = MetaData()
#: JupyterHub's token table, for statements on plain rows.
TOKENS = orm.APIToken.__table__

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
    # the token's own expiry, epoch seconds (schema 2; None: never, or not known yet)
    Column("token_expires_at", Float),
    # the listing's walk: in token order, its filters read from the index alone
    Index(
        "ix_jupyter_token_cache_lineage_listing", "token_id", "kind", "token_expires_at", "service"
    ),
)

#: Which upstream (identity provider) session each subject token of the token exchange was
#: verified for: what revokes that session's hub tokens when the provider ends it. A row
#: lives until its token expires (see hub/upstream_sessions.py).
UPSTREAM = Table(
    "jupyter_token_cache_upstream",
    metadata,
    Column("token_digest", String(64), primary_key=True),
    Column("session_ref", Unicode(64), nullable=False),
    Column("username", Unicode(255), nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)

#: Every reset asked of this hub, so that one it did not finish (stopped, killed) goes on
#: when it starts again, and its handle keeps answering (hub/resets.py): whose tokens, up to
#: which token (those minted after the reset was asked for are left alone), how far it got.
RESETS = Table(
    "jupyter_token_cache_resets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", Unicode(255)),  # None: everyone's
    Column("revoke", Boolean, nullable=False),
    Column("started", Float, nullable=False),
    Column("last_token_id", Integer, nullable=False),
    Column("revoked", Integer, nullable=False),
    Column("upstream_ended", Boolean, nullable=False),
    Column("finished", Float, index=True),
    Column("cleared", Boolean),
    Column("error", Unicode(255)),
)

SCHEMA = Table(
    "jupyter_token_cache_schema",
    metadata,
    Column("version", Integer, nullable=False),
)


class SchemaError(RuntimeError):
    """The hub database holds a newer lineage schema than this extension knows."""


def create_tables(engine: Engine) -> None:
    """Create the tables if missing, upgrade an older schema, record (or check) the version."""
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
        elif found < SCHEMA_VERSION:
            for version in range(found + 1, SCHEMA_VERSION + 1):
                UPGRADES[version](conn)
            for index in LINEAGE.indexes:
                index.create(conn, checkfirst=True)
            conn.execute(update(SCHEMA).values(version=SCHEMA_VERSION))


def _add_token_expiry(conn: Connection) -> None:
    """Schema 2: the token's expiry on each row, copied from the token table.

    Runs once, as the hub starts (before it serves a request), a few thousand rows per
    statement.
    """
    column = LINEAGE.c.token_expires_at
    ddl = CreateColumn(column).compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE {LINEAGE.name} ADD COLUMN {ddl}"))
    rows = select(LINEAGE.c.token_id, TOKENS.c.expires_at).join(
        TOKENS, TOKENS.c.id == LINEAGE.c.token_id
    )
    fill = (
        update(LINEAGE)
        .where(LINEAGE.c.token_id == bindparam("id"))
        .values(token_expires_at=bindparam("expires"))
    )
    after = 0
    while True:
        batch = conn.execute(
            rows.where(LINEAGE.c.token_id > after).order_by(LINEAGE.c.token_id).limit(5_000)
        ).all()
        if not batch:
            return
        after = batch[-1].token_id
        expiring = [
            {"id": r.token_id, "expires": epoch_seconds(r.expires_at)}
            for r in batch
            if r.expires_at is not None
        ]
        if expiring:
            conn.execute(fill, expiring)


#: What brings a schema to each version from the one before.
UPGRADES: dict[int, Callable[[Connection], None]] = {2: _add_token_expiry}


def lineage_end(db: Any) -> int:
    """The last token id of the lineage table (0 when empty): where a revocation walk
    stops, so that tokens minted after it began (or after its reset was asked for) are
    left alone."""
    return int(db.execute(select(func.max(LINEAGE.c.token_id))).scalar() or 0)


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


def to_row(
    ref: TokenRef, user_id: int, lineage: Lineage, expires_at: float | None
) -> dict[str, Any]:
    """The table row of ``lineage`` for the token ``ref`` of user ``user_id``, which
    expires at ``expires_at`` (epoch seconds; None: never)."""
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
        "token_expires_at": expires_at,
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
