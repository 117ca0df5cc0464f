"""Connections: an explicit DSN, else the usual PG* variables, else the embedded cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .errors import ConnectionFailed, MovediskError, from_db_error

_PG_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


def resolve_dsn(dsn: str | None = None) -> str:
    """The DSN to use: ``dsn``, MOVEDISK_DSN, '' (libpq reads PG*), or the embedded cluster's."""
    if dsn:
        return dsn
    env = os.environ.get("MOVEDISK_DSN")
    if env:
        return env
    if any(os.environ.get(v) for v in _PG_VARS):
        return ""
    from .pgserver import EmbeddedCluster

    cluster = EmbeddedCluster.default()
    cluster.start()
    return cluster.dsn()


def connect(dsn: str | None = None, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A psycopg connection whose rows are dicts."""
    target = resolve_dsn(dsn)
    try:
        return psycopg.connect(target, autocommit=autocommit, row_factory=dict_row)
    except psycopg.OperationalError as exc:
        raise ConnectionFailed(f"cannot connect to the database: {str(exc).strip()}") from exc


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the package's SQLSTATEs into movedisk's exception types."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = from_db_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


def call(conn: psycopg.Connection[Any], function: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of ``SELECT * FROM function(args...)``; the name must be a plain identifier.

    The function name is checked against the catalog-safe identifier shape and
    quoted by psycopg; values travel as parameters, never inside the SQL text.
    """
    from psycopg import sql

    if not function.replace("_", "").isalnum():
        raise MovediskError(f"not a function name: {function!r}")
    query = sql.SQL("SELECT * FROM {}({})").format(
        sql.Identifier(function.lower()),
        sql.SQL(", ").join(sql.Placeholder() * len(args)),
    )
    with user_errors():
        return conn.execute(query, args).fetchall()
