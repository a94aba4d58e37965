"""The lineage table's schema: upgraded in place as the hub starts, refused when newer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from jupyterhub import orm
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Unicode,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine

from jupyter_token_cache.hub.lineage import (
    LINEAGE,
    SCHEMA,
    SCHEMA_VERSION,
    SchemaError,
    create_tables,
    epoch_seconds,
)

#: The lineage table as schema 1 had it (before the token's expiry and the listing index).
V1 = MetaData()
Table(
    LINEAGE.name,
    V1,
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
Table(SCHEMA.name, V1, Column("version", Integer, nullable=False))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A hub database with JupyterHub's tables and schema 1 of this extension's."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    db = orm.new_session_factory(url)()
    bind = db.get_bind()
    V1.create_all(bind)
    with bind.begin() as conn:
        conn.execute(insert(SCHEMA).values(version=1))
    yield bind
    db.close()
    bind.dispose()
    if request.param != "sqlite":
        request.getfixturevalue("postgres_server").drop_database(url)


def test_a_schema_1_table_is_upgraded_in_place(engine: Engine) -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, 600_000)
    with engine.begin() as conn:
        conn.execute(insert(orm.OAuthClient.__table__).values(identifier="jupyterhub"))
        user = conn.execute(
            insert(orm.User.__table__).values(name="alice", cookie_id="c")
        ).inserted_primary_key[0]
        for id_, expiry in ((1, expires), (2, None)):
            conn.execute(
                insert(orm.APIToken.__table__).values(
                    id=id_,
                    user_id=user,
                    hashed=f"h{id_}",
                    prefix="abcd",
                    expires_at=expiry,
                    client_id="jupyterhub",
                    scopes=["read:users!user"],
                )
            )
            conn.execute(
                insert(V1.tables[LINEAGE.name]).values(
                    token_id=id_,
                    token_fp="f",
                    user_id=user,
                    kind="notebook",
                    session_kind="token",
                    session_ref="token:a9:f",
                )
            )

    create_tables(engine)
    create_tables(engine)  # a second start finds nothing to do

    with engine.connect() as conn:
        assert conn.execute(select(SCHEMA.c.version)).scalars().all() == [SCHEMA_VERSION]
        rows = dict(conn.execute(select(LINEAGE.c.token_id, LINEAGE.c.token_expires_at)).all())
    assert rows == {1: epoch_seconds(expires), 2: None}
    indexes = {i["name"] for i in inspect(engine).get_indexes(LINEAGE.name)}
    assert "ix_jupyter_token_cache_lineage_listing" in indexes


def test_a_newer_schema_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(SCHEMA).values(version=SCHEMA_VERSION + 1))
    with pytest.raises(SchemaError, match="Upgrade jupyter-token-cache"):
        create_tables(engine)
