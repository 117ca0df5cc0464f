"""Deploy the package into a database: one transaction, under an advisory lock, with one
lock_timeout for all of it.

1. Fresh database (no ``schema_version``): run ``sql/tables/`` and record every
   ``sql/upgrade/`` script as applied. Existing database (the package's own, or an engine's
   that holds other objects and other tools' ``schema_version`` rows): refuse if an applied
   package script was edited or removed, then run the pending ones in order.
   (``sql/roles.sql`` runs first of all, so that any script may grant to the roles.)
2. Apply ``sql/procedures/`` (views first) with CREATE OR REPLACE: a view whose statement
   and stored definition are unchanged is not touched (no lock on its readers); a function
   whose result type changed is dropped and re-created alone. Every function and view the
   files define is recorded in ``package_objects``; a recorded one that left the files is
   dropped (without CASCADE: what depends on it stops the deploy). Nothing else in the
   database is touched: an engine's own functions, views, triggers and rows stay as they were.
3. Apply ``sql/privileges.sql``: grants on the recorded objects only.

A failing statement rolls everything back, and the error names its file and line. A lock
that cannot be had within the lock timeout ends the deploy with the object waited for and
the session holding it. After each script the caller's session settings and the deploy's
own are put back, so a script's SET or RESET (0001 ends with RESET) cannot leak into the
rest of the deploy or into the caller's session.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from .errors import DeployError, LockTimeout, NotPrimary, server_state_error
from .sqlfiles import SqlFile, SqlTree, Statement, split_statements

SCHEMA = "public"
# pg_advisory_xact_lock key shared by every movedisk deploy ('mvdk').
DEPLOY_LOCK = 0x6D76646B
DEFAULT_LOCK_TIMEOUT_S = 5.0

# The package's own rows of schema_version: sql/upgrade/NNNN_name.sql. An engine's rows
# (oVirt: upgrade/04_05_0010_name.sql) and other tools' rows are not the package's.
OURS = r"^upgrade/[0-9]{4}_[a-z0-9_]+\.sql$"

_HAS_SCHEMA_VERSION = "SELECT to_regclass('public.schema_version') IS NOT NULL AS present"
_HAS_OBJECTS = "SELECT to_regclass('public.package_objects') IS NOT NULL AS present"

_APPLIED = """
SELECT script, checksum FROM public.schema_version
WHERE state = 'INSTALLED' AND script ~ %s ORDER BY id
"""

_FOREIGN_ROWS = "SELECT count(*) FROM public.schema_version WHERE script !~ %s"

_RECORD = """
INSERT INTO public.schema_version
    (version, script, checksum, installed_by, started_at, ended_at, state, current, comment)
VALUES (%s, %s, %s, current_user, %s, clock_timestamp(), 'INSTALLED', false, %s)
"""

_RECORD_FRESH = """
INSERT INTO public.schema_version
    (version, script, checksum, installed_by, started_at, ended_at, state, current, comment)
VALUES (%s, %s, %s, current_user, clock_timestamp()::timestamp, clock_timestamp(), 'INSTALLED',
        false, %s)
"""

# The newest package row becomes current only where no other tool's row is current: the
# row an engine's own upgrade tool reads as its version (oVirt: current = true) stays.
_MARK_CURRENT = """
UPDATE public.schema_version
SET current = (id = (SELECT max(id) FROM public.schema_version WHERE script ~ %(ours)s))
WHERE script ~ %(ours)s
  AND NOT EXISTS (SELECT 1 FROM public.schema_version WHERE current AND script !~ %(ours)s)
"""

# Settings a session may change, with their values now, as two array literals (the server
# spells them, so the restore below gets them back as text[] without quoting on this side).
_SETTINGS = """
SELECT pg_catalog.array_agg(s.name ORDER BY s.name)::text AS names,
       pg_catalog.array_agg(pg_catalog.current_setting(s.name) ORDER BY s.name)::text AS vals
FROM pg_catalog.pg_settings AS s
WHERE s.context IN ('user', 'superuser') AND s.name NOT LIKE 'transaction\\_%%'
"""

# One round trip after every script: put back ``names``/``values`` where the script changed
# them (session level: they are the caller's values), then the deploy's own SET LOCALs.
# current_setting() per name instead of a scan of pg_settings (which renders every setting
# with its descriptions: ~6x slower, and this runs after each of the ~50 files). The CTE
# holds a volatile function, so it is computed, whole, before the outer SELECT's SET LOCALs.
_RESTORE = """
WITH restored AS (
    SELECT pg_catalog.count(pg_catalog.set_config(b.name, b.setting, false)) AS n
    FROM ROWS FROM (pg_catalog.unnest(%(names)s::pg_catalog.text[]),
                    pg_catalog.unnest(%(values)s::pg_catalog.text[])) AS b (name, setting)
    WHERE pg_catalog.current_setting(b.name) IS DISTINCT FROM b.setting
)
SELECT r.n,
       pg_catalog.set_config('lock_timeout', %(lock_timeout)s, true),
       pg_catalog.set_config('statement_timeout', '0', true),
       pg_catalog.set_config('search_path', 'public, pg_temp', true),
       pg_catalog.set_config('client_min_messages', 'warning', true),
       pg_catalog.set_config('check_function_bodies', 'on', true)
FROM restored AS r
"""

# Functions and views of the schema (no extension's) with what tells a new definition.
_ROUTINES = """
SELECT p.oid::regprocedure::text AS identity, p.xmin::text AS version
FROM pg_catalog.pg_proc AS p
WHERE p.pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
"""

_VIEWS = """
SELECT c.oid::regclass::text AS identity, r.xmin::text AS version,
       pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
           pg_catalog.pg_get_viewdef(c.oid), 'UTF8')), 'hex') AS definition_hash
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_rewrite AS r ON r.ev_class = c.oid AND r.rulename = '_RETURN'
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
"""

# Views each view reads (directly), by name.
_VIEW_DEPS = """
SELECT DISTINCT v.oid::regclass::text AS view_name, u.oid::regclass::text AS uses
FROM pg_catalog.pg_class AS v
JOIN pg_catalog.pg_rewrite AS r ON r.ev_class = v.oid
JOIN pg_catalog.pg_depend AS d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
JOIN pg_catalog.pg_class AS u ON u.oid = d.refobjid AND u.relkind = 'v' AND u.oid <> v.oid
WHERE v.relnamespace = 'public'::regnamespace AND v.relkind = 'v'
"""

# What each view of ``%s`` calls in public: functions, aggregates, operators.
_VIEW_CALLS = """
SELECT DISTINCT v.relname::text AS view_name,
       coalesce('function public.' || p.oid::regprocedure::text,
                'operator ' || o.oid::regoperator::text) AS called
FROM pg_catalog.pg_class AS v
JOIN pg_catalog.pg_rewrite AS r ON r.ev_class = v.oid
JOIN pg_catalog.pg_depend AS d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
LEFT JOIN pg_catalog.pg_proc AS p
    ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.refobjid
    AND p.pronamespace = 'public'::regnamespace
LEFT JOIN pg_catalog.pg_operator AS o
    ON d.refclassid = 'pg_catalog.pg_operator'::regclass AND o.oid = d.refobjid
    AND o.oprnamespace = 'public'::regnamespace
WHERE v.oid = ANY (SELECT pg_catalog.to_regclass(n) FROM unnest(%s::text[]) AS n)
  AND (p.oid IS NOT NULL OR o.oid IS NOT NULL)
"""

# For each function of ``%s`` (identities), the functions of public with the same name whose
# input types are a strict prefix of its own: the engine's version of a function the package
# extends with trailing parameters. (One query for all: a fresh deploy asks it of ~170.)
_SHORTER_OVERLOADS = """
SELECT i.identity, o.oid::regprocedure::text
FROM pg_catalog.unnest(%s::pg_catalog.text[]) WITH ORDINALITY AS i (identity, ord)
JOIN pg_catalog.pg_proc AS n ON n.oid = pg_catalog.to_regprocedure(i.identity)
JOIN pg_catalog.pg_proc AS o
    ON o.proname = n.proname AND o.pronamespace = n.pronamespace AND o.oid <> n.oid
WHERE o.pronargs < n.pronargs
  AND n.pronargs - n.pronargdefaults <= o.pronargs
  AND (o.proargtypes::oid[])[0:o.pronargs - 1] = (n.proargtypes::oid[])[0:o.pronargs - 1]
ORDER BY i.ord, 2
"""

_RECORDED = """
SELECT object_type, object_identity, statement_hash, definition_hash, adopted
FROM public.package_objects
"""

_UPSERT = """
INSERT INTO public.package_objects AS o
    (object_type, object_identity, source_file, statement_hash, definition_hash, adopted)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (object_type, object_identity) DO UPDATE
SET source_file = excluded.source_file, statement_hash = excluded.statement_hash,
    definition_hash = excluded.definition_hash, _update_date = now()
WHERE (o.source_file, o.statement_hash, o.definition_hash)
      IS DISTINCT FROM (excluded.source_file, excluded.statement_hash, excluded.definition_hash)
"""

_FORGET = "DELETE FROM public.package_objects WHERE object_type = %s AND object_identity = %s"

# Dropped one at a time and without CASCADE: an object of someone else that depends on it
# stops the deploy instead of disappearing with it. The server spells the statement
# (regclass / regprocedure output is quoted); NULL when the object is already gone.
_DROP_STATEMENT = """
SELECT CASE %(kind)s
    WHEN 'view' THEN 'DROP VIEW ' || pg_catalog.to_regclass(%(identity)s)::text
    ELSE 'DROP ROUTINE ' || pg_catalog.to_regprocedure(%(identity)s)::text
END
"""

_LOCK_HOLDERS = """
SELECT c.relname::text,
       CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END AS kind,
       a.pid, coalesce(nullif(a.application_name, ''), a.usename::text) AS who, a.state,
       pg_catalog.to_char(a.xact_start, 'HH24:MI:SS') AS since
FROM pg_catalog.pg_locks AS l
JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
JOIN pg_catalog.pg_class AS c ON c.oid = l.relation
WHERE l.granted AND l.pid <> pg_catalog.pg_backend_pid() AND l.locktype = 'relation'
  AND l.relation = ANY (SELECT pg_catalog.to_regclass(n) FROM unnest(%s::text[]) AS n)
ORDER BY a.xact_start, c.relname LIMIT 5
"""

# Every view and routine that depends, directly or not, on view %s (through its rules or
# its row type), as package_objects spells their identities.
_VIEW_DEPENDENTS = """
WITH RECURSIVE dep (classid, objid) AS (
    SELECT 'pg_catalog.pg_class'::regclass::oid, c.oid FROM pg_catalog.pg_class AS c
    WHERE c.oid = pg_catalog.to_regclass(%s)
    UNION
    SELECT 'pg_catalog.pg_type'::regclass::oid, c.reltype FROM pg_catalog.pg_class AS c
    WHERE c.oid = pg_catalog.to_regclass(%s)
    UNION
    SELECT x.classid, x.objid
    FROM dep
    JOIN pg_catalog.pg_depend AS d ON d.refclassid = dep.classid AND d.refobjid = dep.objid
        AND d.deptype = 'n'
    LEFT JOIN pg_catalog.pg_rewrite AS r
        ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND r.oid = d.objid
    LEFT JOIN pg_catalog.pg_class AS v ON v.oid = r.ev_class
    CROSS JOIN LATERAL (VALUES
        (CASE WHEN r.oid IS NULL THEN d.classid ELSE 'pg_catalog.pg_class'::regclass::oid END,
         coalesce(r.ev_class, d.objid)),
        ('pg_catalog.pg_type'::regclass::oid, coalesce(v.reltype, 0::oid))
    ) AS x (classid, objid)
    WHERE x.objid <> 0
)
SELECT 'view', 'public.' || c.relname FROM dep
JOIN pg_catalog.pg_class AS c ON dep.classid = 'pg_catalog.pg_class'::regclass AND c.oid = dep.objid
WHERE c.relkind = 'v' AND c.oid <> pg_catalog.to_regclass(%s)
UNION
SELECT 'function', 'public.' || p.oid::regprocedure::text FROM dep
JOIN pg_catalog.pg_proc AS p ON dep.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = dep.objid
"""

_CREATE_OBJECT = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:TEMP|TEMPORARY|RECURSIVE)\s+)?"
    r"(VIEW|FUNCTION|PROCEDURE|TABLE)\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.\"]+)",
    re.IGNORECASE,
)


def _created(st: Statement) -> tuple[str, str] | None:
    """('view'|'function'|'table', name) of a CREATE statement; the name as the catalog
    spells it unqualified (lower case unless quoted)."""
    m = _CREATE_OBJECT.match(st.text)
    if not m:
        return None
    kind = m.group(1).lower()
    kind = "function" if kind == "procedure" else kind
    name = m.group(2).split(".")[-1]
    name = name[1:-1] if name.startswith('"') else name.lower()
    return kind, name


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# One row per object of the schema with everything that defines it, privileges (sorted:
# grant order is not a difference) and comments included: equal snapshots mean equal schemas.
CATALOG_SNAPSHOT = """
WITH ours AS (
    SELECT c.oid, c.relname, c.relkind, c.relacl
    FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace
      AND c.relkind IN ('r', 'v', 'm', 'S', 'p')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
)
SELECT 'schema' AS kind, n.nspname::text AS name,
       coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(n.nspacl) AS x), '') || ' ' || coalesce(obj_description(n.oid, 'pg_namespace'), '')
       AS definition
FROM pg_namespace n WHERE n.nspname = 'public'
UNION ALL
SELECT 'relation', o.relname::text,
       o.relkind::text || ' acl=' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(o.relacl) AS x), '') || ' comment='
       || coalesce(obj_description(o.oid, 'pg_class'), '')
       || CASE WHEN o.relkind IN ('v', 'm') THEN ' ' || pg_get_viewdef(o.oid) ELSE '' END
FROM ours o
UNION ALL
SELECT 'column', o.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid), '')
       || ' acl=' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) AS x), '')
       || ' comment=' || coalesce(col_description(o.oid, a.attnum), '')
FROM ours o
JOIN pg_attribute a ON a.attrelid = o.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = o.oid AND ad.adnum = a.attnum
UNION ALL
SELECT 'constraint', o.relname || '.' || con.conname, pg_get_constraintdef(con.oid)
FROM ours o JOIN pg_constraint con ON con.conrelid = o.oid
UNION ALL
SELECT 'index', i.relname::text, pg_get_indexdef(i.oid)
FROM ours o JOIN pg_index x ON x.indrelid = o.oid JOIN pg_class i ON i.oid = x.indexrelid
UNION ALL
SELECT 'trigger', o.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
FROM ours o JOIN pg_trigger t ON t.tgrelid = o.oid AND NOT t.tgisinternal
UNION ALL
SELECT 'routine', p.oid::regprocedure::text,
       CASE WHEN p.prokind = 'a' THEN 'aggregate ' || p.oid::regprocedure::text
            ELSE pg_catalog.pg_get_functiondef(p.oid) END || ' acl=' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(p.proacl) AS x), '')
       || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 'type', t.typname::text, t.typtype::text || ' ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(t.typacl) AS x), '')
FROM pg_type t
WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd')
ORDER BY 1, 2
"""


def catalog_snapshot(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], str]:
    """Every object of the schema with its full definition, privileges and comments."""
    return {(kind, name): definition for kind, name, definition in _rows(conn, CATALOG_SNAPSHOT)}


def diff_snapshots(
    before: dict[tuple[str, str], str], after: dict[tuple[str, str], str]
) -> list[str]:
    """Readable differences between two snapshots ('+ added', '- removed', '~ changed')."""
    out = []
    for key in sorted(before.keys() | after.keys()):
        kind, name = key
        if key not in before:
            out.append(f"+ {kind} {name}")
        elif key not in after:
            out.append(f"- {kind} {name}")
        elif before[key] != after[key]:
            out.append(f"~ {kind} {name}")
    return out


@dataclass
class DeployReport:
    mode: str  # 'fresh' or 'upgrade'
    upgrades_applied: list[str] = field(default_factory=list)
    upgrades_marked: list[str] = field(default_factory=list)
    procedure_files: int = 0
    statements: int = 0
    functions: int = 0
    views: int = 0
    views_unchanged: int = 0
    engine_views_kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    seconds: float = 0.0
    changes: list[str] = field(default_factory=list)
    dry_run: bool = False
    target: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Abort(Exception):
    """Raised to roll back a dry run."""


@dataclass
class _Session:
    """The caller's session settings and the deploy's own, put back after every file."""

    names: str  # text[] literals, as the server spelled them
    values: str
    lock_timeout_ms: str

    @classmethod
    def capture(cls, conn: psycopg.Connection[Any], lock_timeout_s: float) -> _Session:
        names, values = _rows(conn, _SETTINGS)[0]
        return cls(names, values, str(int(lock_timeout_s * 1000)))

    def restore(self, conn: psycopg.Connection[Any]) -> None:
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(_RESTORE, {"names": self.names, "values": self.values,
                                   "lock_timeout": self.lock_timeout_ms}, prepare=True)


_LOCKED_BY = re.compile(
    r"\b(?:REFERENCES|ALTER\s+TABLE(?:\s+IF\s+EXISTS)?(?:\s+ONLY)?|LOCK\s+TABLE|ON|"
    r"INTO|UPDATE|FROM|JOIN|VIEW)\s+([\w.\"]+)",
    re.IGNORECASE,
)


def _lock_error(
    conn: psycopg.Connection[Any], where: str, st: Statement | None, exc: psycopg.Error,
    timeout_ms: str,
) -> LockTimeout:
    """A lock timeout naming the relation waited for and the session holding it (looked up
    among the relations the statement names), and the statement."""
    waited = f"{int(timeout_ms) / 1000:g}s"
    text = st.text if st is not None else ""
    head = " ".join(text.split()[:5])
    names = []
    for n in _LOCKED_BY.findall(text):
        n = n.split(".")[-1]
        n = n[1:-1] if n.startswith('"') else n.lower()
        if n not in names:
            names.append(n)
    holders: list[tuple[Any, ...]] = []
    if names:
        try:
            holders = _rows_params(conn, _LOCK_HOLDERS, ([f"public.{n}" for n in names],))
        except psycopg.Error:
            holders = []
    if holders:
        rel = holders[0][0]
        held = ", ".join(
            f"pid {pid} ({who}, {state} since {since})"
            for r, _k, pid, who, state, since in holders if r == rel
        )
        kind = holders[0][1]
        return LockTimeout(
            f"{where}: gave up after {waited} waiting for a lock on {kind} {rel}; held by {held} "
            f"({head} ...); nothing was changed",
            object=f"{kind} {rel}",
        )
    return LockTimeout(
        f"{where}: gave up after {waited} waiting for a lock ({head} ...): {_message(exc)}; "
        "nothing was changed"
    )


_FILE_BEGIN = "SAVEPOINT movedisk_deploy_file;\n"
_FILE_END = "\n;\nRELEASE SAVEPOINT movedisk_deploy_file"
_FILE_UNDO = "ROLLBACK TO SAVEPOINT movedisk_deploy_file; RELEASE SAVEPOINT movedisk_deploy_file"


def _execute_saved(conn: psycopg.Connection[Any], text: str) -> None:
    """Run ``text`` under its own savepoint in one round trip; on error, back to it and raise
    (the error's position counts from the start of _FILE_BEGIN: see _error_line)."""
    try:
        conn.execute(_FILE_BEGIN + text + _FILE_END)
    except psycopg.Error:
        try:
            conn.execute(_FILE_UNDO)
        except psycopg.Error:
            pass  # (a lost connection: the first error is the one to tell)
        raise


def _execute_file(
    conn: psycopg.Connection[Any], f: SqlFile, session: _Session,
    owned: set[tuple[str, str]] | None = None,
    decide: Callable[[Statement], bool] | None = None,
) -> int:
    """Run one file. Without ``decide``: in one round trip, and if that fails, rolled back
    to its savepoint and run again statement by statement to name the failing line. With
    ``decide``: statement by statement, each run only when ``decide`` says so. A function
    or view whose CREATE OR REPLACE the server refuses (changed result type or columns) is
    replaced by a drop and a create."""
    statements = split_statements(f.text)
    if decide is None:
        # The file between a savepoint and its release, all in one round trip (the text is
        # the package's own, as it is in the file; only constants are added around it).
        try:
            _execute_saved(conn, f.text)
        except psycopg.Error as exc:
            failure: psycopg.Error | None = exc
        else:
            session.restore(conn)
            return len(statements)
    else:
        failure = None
    ran = 0
    with conn.transaction():
        for st in statements:
            if decide is not None and not decide(st):
                continue
            ran += 1
            try:
                _execute_saved(conn, st.text)
            except psycopg.Error as exc:
                if exc.sqlstate in ("42P13", "42P16") and _created(st):
                    _replace(conn, f, st, exc, session, owned or set())
                    continue
                line = _error_line(st, exc)
                where = f"{f.name}:{line}"
                if exc.sqlstate == "55P03":
                    raise _lock_error(conn, where, st, exc, session.lock_timeout_ms) from exc
                stated = server_state_error(exc, where)
                if stated is not None:
                    raise stated from exc
                raise DeployError(
                    f"{where}: {_message(exc)}",
                    file=f.name,
                    line=line,
                    sqlstate=exc.sqlstate,
                ) from exc
    session.restore(conn)
    if failure is None or failure.sqlstate in ("42P13", "42P16"):
        return ran
    raise DeployError(f"{f.name}: {_message(failure)}", file=f.name) from failure


_TARGETS_VIEW = re.compile(
    r"^\s*(?:COMMENT\s+ON\s+(?:VIEW\s+([\w.\"]+)|COLUMN\s+([\w\"]+)\.)"
    r"|GRANT\s+[\w\s,]+\s+ON\s+(?:TABLE\s+)?([\w.\"]+))",
    re.IGNORECASE,
)


def _targets_view(st: Statement) -> str | None:
    """The relation a COMMENT ON VIEW / COLUMN or GRANT ... ON statement is about."""
    m = _TARGETS_VIEW.match(st.text)
    if not m:
        return None
    name = (m.group(1) or m.group(2) or m.group(3)).split(".")[-1]
    return name[1:-1] if name.startswith('"') else name.lower()


_PROBE = "movedisk_deploy_probe"


def _replace(
    conn: psycopg.Connection[Any], f: SqlFile, st: Statement, exc: psycopg.Error,
    session: _Session, owned: set[tuple[str, str]],
) -> None:
    """Drop the existing function (same name and argument types) or view, then create it.

    The argument types come from the server: the statement is first created under a probe
    name in pg_temp. Without CASCADE: an object that depends on the old one stops the deploy.
    """
    kind, name = _created(st)  # type: ignore[misc]
    line = _error_line(st, exc)
    try:
        with conn.transaction():
            if kind == "function":
                probe = _CREATE_OBJECT.sub(
                    lambda m: m.group(0)[: m.start(2) - m.start(0)] + f"pg_temp.{_PROBE}",
                    st.text, count=1,
                )
                conn.execute(probe)
                args = _rows(
                    conn,
                    "SELECT pg_catalog.oidvectortypes(p.proargtypes) "
                    "FROM pg_catalog.pg_proc AS p WHERE p.proname = 'movedisk_deploy_probe' "
                    "AND p.pronamespace = pg_catalog.pg_my_temp_schema()",
                )[0][0]
                conn.execute("DROP ROUTINE " + f"pg_temp.{_PROBE}({args})")
                identity = _rows_params(
                    conn,
                    "SELECT pg_catalog.to_regprocedure(%s)::text",
                    (f"public.{name}({args})",),
                )[0][0]
                if identity:
                    conn.execute("DROP ROUTINE " + identity)
            else:
                # The view's own dependents go with it when the package owns them all (its
                # files re-create them further on); anyone else's dependent stops the deploy.
                view = f"public.{name}"
                dependents = _rows_params(conn, _VIEW_DEPENDENTS, (view, view, view))
                foreign = [f"{k} {i}" for k, i in dependents if (k, i) not in owned]
                if foreign:
                    raise DeployError(
                        f"{f.name}:{line}: view {name} must be re-created ({_message(exc)}) "
                        "but objects the package does not own depend on it: "
                        + ", ".join(sorted(foreign)),
                        file=f.name, line=line,
                    )
                stmt = _rows_params(conn, _DROP_STATEMENT, {"kind": "view", "identity": view})
                if stmt[0][0]:
                    conn.execute(stmt[0][0] + (" CASCADE" if dependents else ""))
            conn.execute(st.text)
    except psycopg.Error as exc2:
        where = f"{f.name}:{line}"
        if exc2.sqlstate == "55P03":
            raise _lock_error(conn, where, st, exc2, session.lock_timeout_ms) from exc2
        detail = (exc2.diag.message_detail or "").replace("\n", "; ")
        raise DeployError(
            f"{where}: {kind} {name} must be re-created ({_message(exc)}) but cannot be "
            f"dropped: {_message(exc2)}{': ' + detail if detail else ''}",
            file=f.name, line=line, sqlstate=exc2.sqlstate,
        ) from exc2


def _message(exc: psycopg.Error) -> str:
    diag = exc.diag
    return (diag.message_primary or str(exc)).strip()


def _error_line(st: Statement, exc: psycopg.Error) -> int:
    import re

    diag = exc.diag
    if diag.statement_position:  # the statement was sent after _FILE_BEGIN
        return st.file_line(int(diag.statement_position) - 1 - len(_FILE_BEGIN))
    context = diag.context or ""
    m = re.search(r"(?:line|near line) (\d+)", context)
    if m:
        return st.body_line(int(m.group(1)))
    return st.line


def _check_applied(
    tree: SqlTree, applied: dict[str, str | None]
) -> list[SqlFile]:
    """The pending upgrade scripts; refuses when an applied one changed or vanished."""
    by_name = {f.name: f for f in tree.upgrades}
    for script, checksum in applied.items():
        f = by_name.get(script)
        if f is None:
            raise DeployError(
                f"{script} is recorded as applied in schema_version but no such file exists; "
                "applied upgrade scripts must never be removed",
                file=script,
            )
        if checksum != f.checksum:
            raise DeployError(
                f"{script} was edited after it was applied (checksum {checksum} recorded, "
                f"{f.checksum} on disk); put the change in a new sql/upgrade/ script",
                file=script,
            )
    pending = [f for f in tree.upgrades if f.name not in applied]
    if pending and applied:
        last = max(by_name[s].version for s in applied)
        early = [f.name for f in pending if f.version < last]
        if early:
            raise DeployError(
                "upgrade scripts numbered below the last applied one (" + ", ".join(early)
                + f" < {last}): renumber them after {last}",
            )
    return pending


def status(conn: psycopg.Connection[Any], tree: SqlTree | None = None) -> dict[str, Any]:
    """What a deploy would do, without taking any lock: installed? pending upgrades?"""
    tree = tree or SqlTree.load()
    if not _rows(conn, _HAS_SCHEMA_VERSION)[0][0]:
        return {"installed": False, "pending": [f.name for f in tree.upgrades]}
    applied = dict(_rows_params(conn, _APPLIED, (OURS,)))
    edited = [
        f.name for f in tree.upgrades if f.name in applied and applied[f.name] != f.checksum
    ]
    return {
        "installed": True,
        "applied": list(applied),
        "pending": [f.name for f in tree.upgrades if f.name not in applied],
        "edited": edited,
        "missing": [s for s in applied if s not in {f.name for f in tree.upgrades}],
    }


def _rows(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    """Rows as tuples, whatever row factory the caller's connection uses."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(query).fetchall()


def _rows_params(conn: psycopg.Connection[Any], query: str, params: Any) -> list[tuple[Any, ...]]:
    with conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(query, params).fetchall()


@dataclass
class _Objects:
    """Functions and views of the schema: identity -> version (the catalog row's xmin)."""

    routines: dict[str, str]
    views: dict[str, tuple[str, str]]  # identity -> (version, definition hash)

    @classmethod
    def read(cls, conn: psycopg.Connection[Any]) -> _Objects:
        with conn.cursor(row_factory=tuple_row) as routines, \
                conn.cursor(row_factory=tuple_row) as views:
            with conn.pipeline():  # one round trip for both
                routines.execute(_ROUTINES)
                views.execute(_VIEWS)
            return cls(
                dict(routines.fetchall()),  # type: ignore[arg-type]
                {i: (v, h) for i, v, h in views.fetchall()},
            )


def _unqualified(identity: str) -> str:
    return identity[len("public."):] if identity.startswith("public.") else identity


def _apply_procedures(
    conn: psycopg.Connection[Any], tree: SqlTree, session: _Session, report: DeployReport,
    *, claim_all: bool, recreate_views: bool, tables_before: set[str],
) -> None:
    """Apply sql/procedures/, record what the files define, drop what left them."""
    recorded = {(t, i): (sh, dh, adopted) for t, i, sh, dh, adopted in _rows(conn, _RECORDED)}
    before = _Objects.read(conn)
    uses: dict[str, set[str]] = {}
    for view, used in _rows(conn, _VIEW_DEPS):
        uses.setdefault(_unqualified(view), set()).add(_unqualified(used))

    # What the package may drop along with a view it must re-create.
    owned = {k for k, v in recorded.items() if not v[2]}
    if claim_all:
        owned |= {("function", _qualify(i)) for i in before.routines}
        owned |= {("view", f"public.{_unqualified(i)}") for i in before.views}

    view_sources: dict[str, tuple[str, str]] = {}  # name -> (file, statement hash)
    skip: set[str] = set()
    redone: set[str] = set()
    engines: set[str] = set()  # the engine's views that the package leaves as they are

    def run_view(st: Statement) -> bool:
        """Whether to run a statement of a views file, decided when its turn comes (the
        views it reads are then as this deploy leaves them)."""
        target = _targets_view(st)
        if target is not None and target in engines:
            return False  # no comment or grant of the package's on the engine's own view
        created = _created(st)
        if not created or created[0] != "view":
            return True
        name = created[1]
        digest = _sha(st.text)
        view_sources[name] = (f.name, digest)
        rec = recorded.get(("view", f"public.{name}"))
        now = before.views.get(name) or before.views.get(f"public.{name}")
        # A view whose statement and stored definition are what was recorded, and that
        # reads no view re-created in this deploy, is left alone (CREATE OR REPLACE VIEW
        # takes an ACCESS EXCLUSIVE lock and would wait behind every open reader).
        if (
            not recreate_views and rec is not None and now is not None
            and rec[0] == digest and rec[1] == now[1]
            and not (uses.get(name, set()) & redone)
        ):
            skip.add(name)
            return False
        if rec is None and now is not None and not claim_all:
            # The engine's own view, met for the first time. Ours adds columns at the end:
            # an extension, replaced in place. Ours has the same columns: the package's
            # stand-in for it, and the engine's definition stays.
            if set(_view_columns(conn, name)) == set(_probe_view_columns(conn, st)):
                engines.add(name)
                return False
        redone.add(name)
        return True

    function_sources: dict[str, str] = {}
    for f in tree.procedures:
        if any((c := _created(st)) and c[0] == "view" for st in split_statements(f.text)):
            report.statements += _execute_file(conn, f, session, owned=owned, decide=run_view)
        else:
            report.statements += _execute_file(conn, f, session, owned=owned)
        report.procedure_files += 1
        for st in split_statements(f.text):
            created = _created(st)
            if created and created[0] == "function":
                function_sources.setdefault(created[1], f.name)
    report.views_unchanged = len(skip - engines)
    report.engine_views_kept = sorted(engines)

    after = _Objects.read(conn)
    defined: dict[tuple[str, str], tuple[str, str | None, str | None]] = {}
    for identity, version in after.routines.items():
        if before.routines.get(identity) != version:
            name = identity.split("(")[0].split(".")[-1].strip('"')
            source = function_sources.get(name, "procedures")
            defined[("function", _qualify(identity))] = (source, None, None)
    for identity, (version, definition) in after.views.items():
        name = _unqualified(identity).strip('"')
        if name in engines:
            continue
        if name in view_sources and (name in skip or before.views.get(identity, ("",))[0] != version):
            source, digest = view_sources[name]
            defined[("view", f"public.{name}")] = (source, digest, definition)
    # A view binds the functions and operators it calls when it is created: one that bound
    # something in public that the package did not define (a shadow planted by a role that
    # can create there) is refused.
    views_now = [i for (k, i) in defined if k == "view"]
    ours = {f"function {i}" for (k, i) in defined if k == "function"}
    shadowed = [
        f"{v} calls {c}" for v, c in _rows_params(conn, _VIEW_CALLS, (views_now,))
        if c not in ours
    ]
    if shadowed:
        raise DeployError(
            "views would call objects in public that the package did not define (a role that "
            "can create in public may have planted them): " + "; ".join(sorted(shadowed))
        )
    # An engine function the package extends with trailing parameters (defaulted) would stay
    # next to the package's as an overload, and the engine's calls would become ambiguous:
    # the package's replaces it (dropped without CASCADE), and stands for it (adopted).
    had = {_qualify(i) for i in before.routines}
    new_functions = [i for k, i in defined if k == "function" and i not in had]
    dropped_overloads: set[str] = set()
    for identity, old in _rows_params(conn, _SHORTER_OVERLOADS, (new_functions,)):
        if (("function", _qualify(old)) in defined or ("function", _qualify(old)) in owned
                or _qualify(old) in dropped_overloads):
            continue
        try:
            with conn.transaction():
                conn.execute(_rows_params(conn, _DROP_STATEMENT, {
                    "kind": "function", "identity": _qualify(old)})[0][0])
        except psycopg.Error as exc:
            raise DeployError(
                f"function {identity} extends {old} of the database, which cannot be "
                f"dropped: {_message(exc)}", sqlstate=exc.sqlstate,
            ) from exc
        dropped_overloads.add(_qualify(old))
        report.replaced.append(f"function {_qualify(old)} by {identity}")
        recorded[("function", identity)] = (None, None, True)
    tables_now = _table_identities(conn)
    for f in tree.tables:
        for st in split_statements(f.text):
            created = _created(st)
            if created and created[0] == "table" and created[1] in tables_now:
                defined[("table", f"public.{created[1]}")] = (f.name, None, None)

    existing = {("function", _qualify(i)) for i in before.routines} | {
        ("view", f"public.{_unqualified(i)}") for i in before.views
    } | {("table", f"public.{t}") for t in tables_before}

    if claim_all:
        # The package's own database from before package_objects existed: every function
        # and view of the schema came from its files.
        for identity in before.routines:
            recorded.setdefault(("function", _qualify(identity)), (None, None, False))
        for identity in before.views:
            recorded.setdefault(("view", f"public.{_unqualified(identity)}"), (None, None, False))

    # What left the files: dropped when the package created it, forgotten when adopted.
    gone = [k for k in recorded if k not in defined]
    for kind, identity in sorted(gone, key=lambda k: (k[0] != "view", k[1])):
        adopted = recorded[(kind, identity)][2]
        if kind != "table" and not adopted:
            stmt = _rows_params(conn, _DROP_STATEMENT, {"kind": kind, "identity": identity})
            if stmt[0][0]:
                try:
                    with conn.transaction():
                        conn.execute(stmt[0][0])
                except psycopg.Error as exc:
                    if exc.sqlstate == "55P03":
                        raise _lock_error(
                            conn, f"dropping {identity}", None, exc, session.lock_timeout_ms
                        ) from exc
                    detail = (exc.diag.message_detail or "").replace("\n", "; ")
                    raise DeployError(
                        f"{kind} {identity} left the files but cannot be dropped: "
                        f"{_message(exc)}{': ' + detail if detail else ''}",
                        sqlstate=exc.sqlstate,
                    ) from exc
                report.dropped.append(f"{kind} {identity}")
        conn.execute(_FORGET, (kind, identity))
    upserts = []
    for (kind, identity), (source, digest, definition) in defined.items():
        adopted = recorded[(kind, identity)][2] if (kind, identity) in recorded else (
            (kind, identity) in existing and not claim_all
        )
        upserts.append((kind, identity, source, digest, definition, adopted))
    with conn.cursor() as cur:  # pipelined: ~200 rows on a fresh deploy
        cur.executemany(_UPSERT, upserts)
    report.functions = sum(1 for k in defined if k[0] == "function")
    report.views = sum(1 for k in defined if k[0] == "view")


_COLUMNS = """
SELECT a.attname::text FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid = pg_catalog.to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def _view_columns(conn: psycopg.Connection[Any], name: str) -> list[str]:
    return [r[0] for r in _rows_params(conn, _COLUMNS, (f"public.{name}",))]


def _probe_view_columns(conn: psycopg.Connection[Any], st: Statement) -> list[str]:
    """The columns the statement's view would have: created as a temporary view and dropped."""
    probe = _CREATE_OBJECT.sub(
        lambda m: m.group(0)[: m.start(2) - m.start(0)] + "pg_temp.movedisk_deploy_probe",
        st.text, count=1,
    )
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(probe)
            return [r[0] for r in _rows_params(conn, _COLUMNS, ("pg_temp.movedisk_deploy_probe",))]
    except psycopg.Error:
        return []


def _qualify(identity: str) -> str:
    return identity if identity.startswith("public.") else f"public.{identity}"


_TABLE_NAMES = """
SELECT c.relname::text FROM pg_catalog.pg_class AS c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
"""


def _table_identities(conn: psycopg.Connection[Any]) -> set[str]:
    return {r[0] for r in _rows(conn, _TABLE_NAMES)}


def deploy(
    conn: psycopg.Connection[Any],
    *,
    tree: SqlTree | None = None,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
) -> DeployReport:
    """Bring the database to the files' schema in one transaction.

    ``dry_run`` does the whole deploy and rolls it back, reporting in ``changes`` what it
    would have changed in the catalog. ``lock_timeout`` (seconds) bounds every lock wait
    of the deploy, the first (the advisory lock between deploys) included.
    """
    tree = tree or SqlTree.load()
    tree.require_complete()
    started = time.perf_counter()
    report = DeployReport(mode="fresh", dry_run=dry_run)
    session = _Session.capture(conn, lock_timeout)
    try:
        with conn.transaction():
            session.restore(conn)
            try:
                conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (DEPLOY_LOCK,))
            except psycopg.errors.LockNotAvailable as exc:
                raise LockTimeout(
                    f"gave up after {lock_timeout:g}s waiting for another movedisk deploy "
                    "into this database (advisory lock); nothing was changed"
                ) from exc
            standby, read_only = _rows(
                conn, "SELECT pg_catalog.pg_is_in_recovery(), "
                "pg_catalog.current_setting('transaction_read_only') = 'on'"
            )[0]
            if standby or read_only:
                raise NotPrimary(
                    "the database is read-only ("
                    + ("a standby: deploy into the primary, e.g. with "
                       "target_session_attrs=read-write" if standby
                       else "default_transaction_read_only is on")
                    + "); nothing was changed"
                )
            fresh = not _rows(conn, _HAS_SCHEMA_VERSION)[0][0]
            before = {} if fresh else catalog_snapshot(conn)
            tables_before = _table_identities(conn)
            if tree.roles:
                report.statements += _execute_file(conn, tree.roles, session)
            claim_all = False
            if fresh:
                for f in tree.tables:
                    report.statements += _execute_file(conn, f, session)
                with conn.cursor() as cur:  # pipelined
                    cur.executemany(_RECORD_FRESH, [
                        (f.version, f.name, f.checksum, "fresh install: included in sql/tables/")
                        for f in tree.upgrades
                    ])
                report.upgrades_marked.extend(f.name for f in tree.upgrades)
            else:
                report.mode = "upgrade"
                # The package's own database from before package_objects was kept: no other
                # tool's schema_version rows, and the record table still to come.
                claim_all = not _rows(conn, _HAS_OBJECTS)[0][0] and not _rows_params(
                    conn, _FOREIGN_ROWS, (OURS,)
                )[0][0]
                applied = dict(_rows_params(conn, _APPLIED, (OURS,)))
                for f in _check_applied(tree, applied):
                    t0 = time.perf_counter()
                    report.statements += _execute_file(conn, f, session)
                    _record(conn, f, f"upgrade in {time.perf_counter() - t0:.3f}s")
                    report.upgrades_applied.append(f.name)
            if report.upgrades_marked or report.upgrades_applied:
                conn.execute(_MARK_CURRENT, {"ours": OURS})
            _apply_procedures(
                conn, tree, session, report,
                claim_all=claim_all, tables_before=tables_before,
                recreate_views=bool(report.upgrades_applied),
            )
            if tree.privileges:
                report.statements += _execute_file(conn, tree.privileges, session)
            if not fresh or dry_run:
                # (A fresh install has nothing to compare: it costs ~15% of a deploy.)
                report.changes = diff_snapshots(before, catalog_snapshot(conn))
            if dry_run:
                raise _Abort
    except _Abort:
        pass
    report.seconds = time.perf_counter() - started
    return report


def _record(conn: psycopg.Connection[Any], f: SqlFile, comment: str) -> None:
    conn.execute(_RECORD, (f.version, f.name, f.checksum, _now(conn), comment))


def _now(conn: psycopg.Connection[Any]) -> Any:
    return _rows(conn, "SELECT clock_timestamp()::timestamp")[0][0]
