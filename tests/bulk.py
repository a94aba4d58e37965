"""Bulk-load a hub database with tens of thousands of minted tokens, as the hub writes them.

The scale tests and the scale benchmark need 30,000 to 100,000 token rows; minting them
through the REST API takes minutes (a request, two commits and a lineage row each).
:func:`load` writes the same rows with ``executemany`` in a few transactions, in seconds:
per user, an API token (the parent session, as ``POST /hub/api/users/{name}/tokens``
makes it) and a notebook and an internal token minted from it, each with its lineage row
(:func:`jupyter_token_cache.hub.lineage.to_row`), hashed as JupyterHub hashes generated
tokens (``sha512``, one round, 8 random salt bytes: ``orm.APIToken.find`` finds them).
:func:`same_shape` checks a loaded row against one minted through the API.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from jupyterhub import orm
from jupyterhub.scopes import expand_scopes
from jupyterhub.utils import hash_token
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from jupyter_token_cache.hub.lineage import LINEAGE, fingerprint, to_row
from jupyter_token_cache.times import naive_utc
from jupyter_token_cache.tokens.lineage import Lineage, note_for
from jupyter_token_cache.tokens.models import TokenRef

USERS = orm.User.__table__
TOKENS = orm.APIToken.__table__
USER_ROLES = orm.Base.metadata.tables["user_role_map"]
ROLES = orm.Role.__table__
#: Rows per ``executemany``: one transaction each.
CHUNK = 5_000
#: The user name that stands for each user in the scope templates.
_WHO = "bulk-user-placeholder"


@dataclass
class Loaded:
    """What :func:`load` wrote: users, minted token ids, and some tokens to use."""

    users: list[str] = field(default_factory=list)
    #: Ids of the minted (notebook and internal) rows, ascending.
    minted_ids: list[int] = field(default_factory=list)
    #: ``every``-th minted token (the secret), by id: enough to check 403s on.
    sample: dict[int, str] = field(default_factory=dict)
    #: The parent API token of each user, by name.
    parents: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _scopes(scopes: list[str]) -> list[str]:
    """``scopes`` expanded for a user, with the placeholder for the name (as the hub stores
    a minted token's scopes: expanded, sorted)."""
    return sorted(expand_scopes(scopes, owner=orm.User(name=_WHO)))


@dataclass(frozen=True)
class _Token:
    token: str
    hashed: str

    def row(self, id_: int, user_id: int) -> dict[str, Any]:
        prefix = self.token[: orm.APIToken.prefix_length]
        return {"id": id_, "user_id": user_id, "hashed": self.hashed, "prefix": prefix}


def _token() -> _Token:
    """A token and its hash, as ``orm.APIToken.new`` makes a generated one."""
    token = uuid.uuid4().hex
    return _Token(token, hash_token(token, salt=8, rounds=1))


def _max_id(conn: Any, table: Any) -> int:
    return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar())


def load(
    engine: Engine,
    users: int,
    *,
    prefix: str = "bulk",
    notebook_scopes: tuple[str, ...] = ("access:servers!user", "read:users!user"),
    service: str = "dask",
    service_scopes: tuple[str, ...] = ("read:users!user",),
    lifetime: int = 86_400,
    minted: int = 2,
    every: int = 100,
) -> Loaded:
    """``users`` users, each with an API token and ``minted`` tokens minted from it (a
    notebook token, an internal token for ``service``, another notebook token...), in the
    hub database behind ``engine``; ``every``-th minted token kept in ``sample``.

    Each user holds the hub's ``user`` role, so their tokens work in the hub.
    """
    started = time.perf_counter()
    loaded = Loaded(users=[f"{prefix}{i}" for i in range(users)])
    kinds = [
        ("notebook", _scopes(list(notebook_scopes)), None),
        ("internal", _scopes(list(service_scopes)), service),
    ]
    now = time.time()
    rows = {"created": naive_utc(now), "client_id": "jupyterhub"}
    expires = now + lifetime
    with engine.begin() as conn:
        first_user = _max_id(conn, USERS) + 1
        role = conn.execute(select(ROLES.c.id).where(ROLES.c.name == "user")).scalar()
    for start in range(0, users, CHUNK):
        names = loaded.users[start : start + CHUNK]
        user_ids = range(first_user + start, first_user + start + len(names))
        with engine.begin() as conn:
            conn.execute(
                insert(USERS),
                [
                    {
                        "id": i,
                        "name": name,
                        "admin": False,
                        "created": rows["created"],
                        "cookie_id": uuid.uuid4().hex,
                    }
                    for i, name in zip(user_ids, names, strict=True)
                ],
            )
            conn.execute(
                insert(USER_ROLES),
                [{"user_id": i, "role_id": role, "managed_by_auth": False} for i in user_ids],
            )
            ids = itertools.count(_max_id(conn, TOKENS) + 1)
            # every row names every column: executemany writes those of the first row
            tokens, lineage = [], []
            for user_id, name in zip(user_ids, names, strict=True):
                parent, parent_id = _token(), next(ids)
                loaded.parents[name] = parent.token
                tokens.append(
                    {
                        **rows,
                        **parent.row(parent_id, user_id),
                        "note": "bulk parent",
                        "expires_at": None,
                        "scopes": ["inherit"],
                    }
                )
                root = TokenRef(f"a{parent_id}", fingerprint(parent.hashed))
                for n in range(minted):
                    kind, scopes, svc = kinds[n % 2]
                    child, child_id = _token(), next(ids)
                    tokens.append(
                        {
                            **rows,
                            **child.row(child_id, user_id),
                            "note": note_for(kind, svc),
                            "expires_at": naive_utc(expires),
                            "scopes": [s.replace(_WHO, name) for s in scopes],
                        }
                    )
                    ref = TokenRef(f"a{child_id}", fingerprint(child.hashed))
                    lineage.append(to_row(ref, user_id, _lineage(kind, svc, root), expires))
                    loaded.minted_ids.append(child_id)
                    if child_id % every == 0:
                        loaded.sample[child_id] = child.token
            conn.execute(insert(TOKENS), tokens)
            conn.execute(insert(LINEAGE), lineage)
    _advance_sequences(engine)
    loaded.seconds = time.perf_counter() - started
    return loaded


def _lineage(kind: str, service: str | None, root: TokenRef) -> Lineage:
    """A token minted with a user's API token (a "token" session, rooted at that token)."""
    return Lineage(
        kind=kind,
        session_kind="token",
        session_ref=f"token:{root.id}:{root.fp}",
        session_expires_at=None,
        root=root,
        via=None,
        session_id=None,
        server=None,
        service=service,
    )


def _advance_sequences(engine: Engine) -> None:
    """PostgreSQL: move the id sequences past the rows written with explicit ids."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        for table in (USERS, TOKENS):
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608
                f"(SELECT MAX(id) FROM {table.name}))"
            )


def rows_of(engine: Engine, token_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The token row and the lineage row of ``token_id``, as dicts."""
    with engine.connect() as conn:
        token = conn.execute(select(TOKENS).where(TOKENS.c.id == token_id)).mappings().one()
        row = conn.execute(select(LINEAGE).where(LINEAGE.c.token_id == token_id)).mappings().one()
    return dict(token), dict(row)


def same_shape(engine: Engine, loaded_id: int, minted_id: int, owners: tuple[str, str]) -> None:
    """Assert the loaded row ``loaded_id`` is written as the API wrote ``minted_id``.

    Same columns set and unset, the same note, client and hash scheme, the fingerprint
    scheme of the lineage row, and the same scopes once the owners' names (``owners``:
    loaded, minted) are swapped.
    """
    (bulk_token, bulk_row), (api_token, api_row) = (
        rows_of(engine, loaded_id),
        rows_of(engine, minted_id),
    )
    unset = {k for k, v in api_token.items() if v is None}
    assert {k for k, v in bulk_token.items() if v is None} == unset, (bulk_token, api_token)
    for name in ("note", "client_id", "session_id"):
        assert bulk_token[name] == api_token[name], name
    assert bulk_token["hashed"].split(":")[:2] == api_token["hashed"].split(":")[:2]
    assert len(bulk_token["hashed"]) == len(api_token["hashed"])
    assert bulk_token["prefix"] == bulk_token["prefix"][: orm.APIToken.prefix_length]
    scopes = [s.replace(owners[0], owners[1]) for s in bulk_token["scopes"]]
    assert scopes == api_token["scopes"], (scopes, api_token["scopes"])
    for row, token in ((bulk_row, bulk_token), (api_row, api_token)):
        assert row["token_fp"] == fingerprint(token["hashed"])
    assert {k for k, v in bulk_row.items() if v is None} == {
        k for k, v in api_row.items() if v is None
    }
    for name in ("kind", "session_kind", "service"):
        assert bulk_row[name] == api_row[name], name
