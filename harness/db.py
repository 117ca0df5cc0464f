"""Connections: an explicit DSN, else MOVEDISK_DSN, else the usual PG* variables; the
embedded cluster only when asked for (``--embedded``, the ``demo`` command).

Every error libpq or the server reports becomes a movedisk error with one line and its own
exit code (harness/errors.py), whichever command met it.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from .errors import (
    AuthenticationFailed,
    ConnectionFailed,
    InvalidDsn,
    MovediskError,
    NoTarget,
    from_any_db_error,
    from_connect_error,
    from_db_error,
)

T = TypeVar("T")

_PG_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")

# The --dsn value that stands for the embedded cluster (not a libpq connection string:
# it has no '=' and no scheme, so no real DSN can be mistaken for it).
EMBEDDED = "embedded"

NO_TARGET = (
    "no database given: pass --dsn (or set MOVEDISK_DSN or the PG* variables) for the "
    "engine's database, or --embedded for the embedded cluster"
)


@dataclass(frozen=True)
class Target:
    dsn: str
    embedded: bool = False


def resolve_target(dsn: str | None = None) -> Target:
    """Where to connect: ``dsn`` (EMBEDDED for the embedded cluster), MOVEDISK_DSN, '' when
    the PG* variables name a server; with none of them, NoTarget."""
    if dsn == EMBEDDED:
        from .pgserver import EmbeddedCluster

        cluster = EmbeddedCluster.default()
        cluster.start()
        return Target(cluster.dsn(), embedded=True)
    if dsn:
        return Target(dsn)
    env = os.environ.get("MOVEDISK_DSN")
    if env:
        return resolve_target(env)
    if any(os.environ.get(v) for v in _PG_VARS):
        return Target("")
    raise NoTarget(NO_TARGET)


def resolve_dsn(dsn: str | None = None) -> str:
    """The libpq connection string of :func:`resolve_target`."""
    return resolve_target(dsn).dsn


def _safe_target(dsn: str) -> str:
    """The connection string without its password, for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "the given connection string"
    parts.pop("password", None)
    shown = " ".join(f"{k}={v}" for k, v in parts.items())
    return shown or "the server of the PG* variables"


def connect(dsn: str | None = None, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A psycopg connection whose rows are dicts; a failure is a one-line movedisk error."""
    target = resolve_target(dsn)
    try:
        conn = psycopg.connect(target.dsn, autocommit=autocommit, row_factory=dict_row)
    except psycopg.Error as exc:
        raise from_connect_error(exc, _safe_target(target.dsn)) from exc
    conn.movedisk_embedded = target.embedded  # type: ignore[attr-defined]
    return conn


def describe_target(conn: psycopg.Connection[Any]) -> str:
    """Where ``conn`` is: 'database engine on db1:5432 as engine' (or the embedded cluster)."""
    info = conn.info
    where = f"database {info.dbname} on {info.host}:{info.port} as {info.user}"
    if getattr(conn, "movedisk_embedded", False):
        where += " (embedded cluster)"
    return where


def target_json(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    info = conn.info
    return {
        "host": info.host,
        "port": info.port,
        "dbname": info.dbname,
        "user": info.user,
        "embedded": bool(getattr(conn, "movedisk_embedded", False)),
    }


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


@contextmanager
def all_errors() -> Iterator[None]:
    """Turn every psycopg error into a movedisk error (what the command line shows)."""
    try:
        yield
    except psycopg.Error as exc:
        raise from_any_db_error(exc) from exc


# ``SELECT * FROM function(%s, ...)`` by (function, number of arguments), composed once.
_FUNCTION_QUERIES: dict[tuple[str, int], bytes] = {}


def function_query(conn: psycopg.Connection[Any], function: str, nargs: int) -> bytes:
    """The statement calling ``function`` with ``nargs`` parameters: the name checked to be a
    plain ASCII identifier and quoted by psycopg, the values left to parameters. Composed once
    per function and arity (the same bytes on any connection, the name being ASCII)."""
    key = (function, nargs)
    query = _FUNCTION_QUERIES.get(key)
    if query is None:
        from psycopg import sql

        if not (function.isascii() and function.replace("_", "").isalnum()):
            raise MovediskError(f"not a function name: {function!r}")
        query = _FUNCTION_QUERIES[key] = sql.SQL("SELECT * FROM {}({})").format(
            sql.Identifier(function.lower()),
            sql.SQL(", ").join(sql.Placeholder() * nargs),
        ).as_bytes(conn)
    return query


def call(conn: psycopg.Connection[Any], function: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of ``SELECT * FROM function(args...)`` (function_query); values travel as
    parameters, never inside the SQL text."""
    query = function_query(conn, function, len(args))
    with user_errors():
        return conn.execute(query, args).fetchall()


# --- following the primary: bounded retries, and the primary guard ---------------------


@dataclass(frozen=True)
class Backoff:
    """How long to keep trying to reach the primary again: exponential delays with jitter,
    at most ``attempts`` tries and ``deadline`` seconds in all, then a clear error."""

    attempts: int = 12
    initial: float = 0.05
    factor: float = 2.0
    ceiling: float = 2.0
    deadline: float = 30.0

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1-based), with +-25% jitter."""
        base = min(self.ceiling, self.initial * self.factor ** (attempt - 1))
        return base * random.uniform(0.75, 1.25)


DEFAULT_BACKOFF = Backoff()

# Server errors that mean "this server went away or cannot take writes right now"; with a
# multi-host DSN another attempt finds the new primary.
_RETRY_SQLSTATES = {
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (starting up, or in recovery during a promote)
    "25006",  # read_only_sql_transaction (the server became, or is, a standby)
}


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a lost or refused connection that a new attempt may get past."""
    if not isinstance(exc, psycopg.Error):
        return False
    sqlstate = exc.sqlstate or ""
    if sqlstate in _RETRY_SQLSTATES or sqlstate.startswith("08"):
        return True
    return isinstance(exc, psycopg.OperationalError) and not sqlstate


def retrying(
    attempt: Callable[[], T],
    backoff: Backoff = DEFAULT_BACKOFF,
    *,
    what: str = "the database",
    on_retry: Callable[[int, float, BaseException], None] | None = None,
) -> T:
    """``attempt()``, again after a transient failure, until it succeeds or the backoff is spent.

    Any other error goes through at once. At the end: ConnectionFailed saying how many
    attempts over how long, and the last error.
    """
    started = time.monotonic()
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except Exception as exc:
            if isinstance(exc, (AuthenticationFailed, InvalidDsn, NoTarget)):
                raise  # the same attempt would fail the same way
            # A psycopg error, or the movedisk error that connect() made of one.
            cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
            if cause is None or not is_transient(cause):
                raise
            pause = backoff.delay(tries)
            spent = time.monotonic() - started
            if tries >= backoff.attempts or spent + pause > backoff.deadline:
                last = " ".join(str(cause).split())
                raise ConnectionFailed(
                    f"gave up reaching {what} after {tries} attempts over {spent:.1f}s: {last}",
                    attempts=tries,
                    seconds=round(spent, 3),
                ) from exc
            if on_retry:
                on_retry(tries, pause, exc)
            time.sleep(pause)


def primary_transaction(
    fn: Callable[[psycopg.Connection[Any]], T],
    dsn: str | None = None,
    *,
    backoff: Backoff = DEFAULT_BACKOFF,
    on_retry: Callable[[int, float, BaseException], None] | None = None,
) -> T:
    """Run ``fn(conn)`` in one transaction on the primary; after a lost connection, run it
    again from the start on whichever server is the primary by then.

    Before ``fn`` runs, the server is checked to be the primary
    (:func:`movedisk.replication.require_primary`): a standby or an old primary is
    refused with NotPrimary and never retried. ``fn`` must decide from what it reads
    in its transaction (what the database says), never from what the caller
    remembers: when the connection drops during COMMIT nobody knows whether the
    commit happened, and the re-run must find out by reading.
    """
    from .replication import require_primary

    target = resolve_dsn(dsn)

    def attempt() -> T:
        conn = connect(target)
        try:
            with user_errors(), conn.transaction():
                require_primary(conn, target)
                return fn(conn)
        finally:
            conn.close()

    return retrying(attempt, backoff, what="the primary", on_retry=on_retry)


class PrimarySession:
    """One connection to the primary for a long-running process, made again when lost.

    ``conn`` is a live connection to a server that passed the primary guard;
    after a transient error the caller calls :meth:`reconnect` (bounded backoff, a
    clear ConnectionFailed at the end) and then reloads what it was doing from the
    database: a statement whose connection dropped may or may not have committed.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        autocommit: bool = True,
        backoff: Backoff = DEFAULT_BACKOFF,
        on_retry: Callable[[int, float, BaseException], None] | None = None,
    ) -> None:
        self.dsn = resolve_dsn(dsn)
        self.autocommit = autocommit
        self.backoff = backoff
        self.on_retry = on_retry
        self.reconnects = 0
        self._conn: psycopg.Connection[Any] | None = None

    def _open(self) -> psycopg.Connection[Any]:
        from .replication import require_primary

        conn = connect(self.dsn, autocommit=True)
        try:
            with user_errors():
                require_primary(conn, self.dsn)
        except BaseException:
            conn.close()
            raise
        conn.autocommit = self.autocommit
        return conn

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = retrying(self._open, self.backoff, what="the primary",
                                  on_retry=self.on_retry)
        return self._conn

    def reconnect(self) -> psycopg.Connection[Any]:
        self.close()
        self.reconnects += 1
        return self.conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PrimarySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
