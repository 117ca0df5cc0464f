"""Deploy the package into a database: one transaction, under an advisory lock.

1. Fresh database (no ``schema_version``): run ``sql/tables/`` and record every
   ``sql/upgrade/`` script as applied. Existing database: refuse if an applied
   script was edited or removed, then run the pending scripts in order.
   (``sql/roles.sql`` runs first of all, so that any script may grant to the roles.)
2. Drop every view and function of the schema and apply ``sql/procedures/``
   (views first), so that no function exists that no file defines.
3. Apply ``sql/privileges.sql`` (roles, grants, nothing to PUBLIC).

A failing statement rolls everything back, and the error names its file and line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from .errors import DeployError
from .sqlfiles import SqlFile, SqlTree, Statement, split_statements

SCHEMA = "public"
# pg_advisory_xact_lock key shared by every movedisk deploy ('mvdk').
DEPLOY_LOCK = 0x6D76646B

_HAS_SCHEMA_VERSION = "SELECT to_regclass('public.schema_version') IS NOT NULL AS present"

_APPLIED = """
SELECT script, checksum FROM public.schema_version
WHERE state = 'INSTALLED' ORDER BY id
"""

_RECORD = """
INSERT INTO public.schema_version
    (version, script, checksum, installed_by, started_at, ended_at, state, current, comment)
VALUES (%s, %s, %s, current_user, %s, clock_timestamp(), 'INSTALLED', false, %s)
"""

_MARK_CURRENT = """
UPDATE public.schema_version SET current = (id = (SELECT max(id) FROM public.schema_version))
"""

# Every plain view, then every routine, of the schema that no extension owns.
_DROP_PROCEDURES = """
DO $drop$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname AS view_name
        FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'v'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                            AND d.deptype = 'e')
    LOOP
        EXECUTE format('DROP VIEW IF EXISTS public.%I CASCADE', r.view_name);
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure::text AS routine, p.prokind
        FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                            AND d.deptype = 'e')
    LOOP
        EXECUTE format('DROP %s %s',
                       CASE r.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
                       r.routine);
    END LOOP;
END
$drop$
"""

_COUNTS = """
SELECT
    (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace) AS functions,
    (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace
     AND relkind = 'v') AS views
"""

# One row per object of the schema with everything that defines it, privileges and
# comments included: equal snapshots mean equal schemas.
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
       coalesce(n.nspacl::text, '') || ' ' || coalesce(obj_description(n.oid, 'pg_namespace'), '')
       AS definition
FROM pg_namespace n WHERE n.nspname = 'public'
UNION ALL
SELECT 'relation', o.relname::text,
       o.relkind::text || ' acl=' || coalesce(o.relacl::text, '') || ' comment='
       || coalesce(obj_description(o.oid, 'pg_class'), '')
       || CASE WHEN o.relkind IN ('v', 'm') THEN ' ' || pg_get_viewdef(o.oid) ELSE '' END
FROM ours o
UNION ALL
SELECT 'column', o.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid), '')
       || ' acl=' || coalesce(a.attacl::text, '')
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
       pg_get_functiondef(p.oid) || ' acl=' || coalesce(p.proacl::text, '')
       || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 'type', t.typname::text, t.typtype::text || ' ' || coalesce(t.typacl::text, '')
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
    seconds: float = 0.0
    changes: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Abort(Exception):
    """Raised to roll back a dry run."""


def _execute_file(conn: psycopg.Connection[Any], f: SqlFile) -> int:
    """Run one file in one round trip; if it fails, roll it back to its savepoint and run
    it again statement by statement to name the failing line."""
    statements = split_statements(f.text)
    try:
        with conn.transaction():
            conn.execute(f.text)
        return len(statements)
    except psycopg.Error as exc:
        failure = exc
    with conn.transaction():
        for st in statements:
            try:
                conn.execute(st.text)
            except psycopg.Error as exc:
                line = _error_line(st, exc)
                raise DeployError(
                    f"{f.name}:{line}: {_message(exc)}",
                    file=f.name,
                    line=line,
                    sqlstate=exc.sqlstate,
                ) from exc
    raise DeployError(f"{f.name}: {_message(failure)}", file=f.name) from failure


def _message(exc: psycopg.Error) -> str:
    diag = exc.diag
    return (diag.message_primary or str(exc)).strip()


def _error_line(st: Statement, exc: psycopg.Error) -> int:
    import re

    diag = exc.diag
    if diag.statement_position:
        return st.file_line(int(diag.statement_position) - 1)
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
    applied = dict(_rows(conn, _APPLIED))
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


def deploy(
    conn: psycopg.Connection[Any],
    *,
    tree: SqlTree | None = None,
    dry_run: bool = False,
) -> DeployReport:
    """Bring the database to the files' schema in one transaction.

    ``dry_run`` does the whole deploy and rolls it back, reporting in
    ``changes`` what it would have changed in the catalog.
    """
    tree = tree or SqlTree.load()
    started = time.perf_counter()
    report = DeployReport(mode="fresh", dry_run=dry_run)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (DEPLOY_LOCK,))
            conn.execute("SET LOCAL search_path = public, pg_temp")
            conn.execute("SET LOCAL client_min_messages = warning")
            conn.execute("SET LOCAL check_function_bodies = on")
            fresh = not _rows(conn, _HAS_SCHEMA_VERSION)[0][0]
            before = {} if fresh else catalog_snapshot(conn)
            if tree.roles:
                report.statements += _execute_file(conn, tree.roles)
            if fresh:
                for f in tree.tables:
                    report.statements += _execute_file(conn, f)
                for f in tree.upgrades:
                    _record(conn, f, "fresh install: included in sql/tables/")
                    report.upgrades_marked.append(f.name)
            else:
                report.mode = "upgrade"
                applied = dict(_rows(conn, _APPLIED))
                for f in _check_applied(tree, applied):
                    t0 = time.perf_counter()
                    report.statements += _execute_file(conn, f)
                    _record(conn, f, f"upgrade in {time.perf_counter() - t0:.3f}s")
                    report.upgrades_applied.append(f.name)
            if report.upgrades_marked or report.upgrades_applied:
                conn.execute(_MARK_CURRENT)
            conn.execute(_DROP_PROCEDURES)
            for f in tree.procedures:
                report.statements += _execute_file(conn, f)
                report.procedure_files += 1
            if tree.privileges:
                report.statements += _execute_file(conn, tree.privileges)
            if fresh and not dry_run:
                # Everything is new: no catalog comparison to make (it costs ~15% of a deploy).
                report.functions, report.views = _rows(conn, _COUNTS)[0]
            else:
                after = catalog_snapshot(conn)
                report.changes = diff_snapshots(before, after)
                report.functions = sum(1 for k in after if k[0] == "routine")
                report.views = sum(
                    1 for k, v in after.items() if k[0] == "relation" and v[:1] == "v"
                )
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
