"""The PostgreSQL server the hub tests run on: fresh databases, usable through SQLAlchemy."""

from __future__ import annotations

import sqlalchemy

from .servers import LOOPBACK, PostgresServer


def test_create_database_gives_a_fresh_usable_database(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    assert first.startswith(f"postgresql+psycopg2://postgres@{LOOPBACK}:{postgres_server.port}/")
    engine = sqlalchemy.create_engine(first)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE t (x text)"))
            conn.execute(sqlalchemy.text("INSERT INTO t VALUES ('é')"))
            assert conn.execute(sqlalchemy.text("SELECT x FROM t")).scalar() == "é"
            assert conn.execute(sqlalchemy.text("SHOW server_encoding")).scalar() == "UTF8"
    finally:
        engine.dispose()
    postgres_server.drop_database(first)
    postgres_server.drop_database(second)
    assert postgres_server.dump() == {}
