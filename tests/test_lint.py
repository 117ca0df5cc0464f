"""Static checks over the package: sqlfluff, PL/pgSQL parsing, plpgsql_check, squawk.

None of these may skip: `make test` installs what they need (scripts/setup-system).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pglast
import psycopg
import pytest
from psycopg.rows import dict_row

from movedisk.sqlfiles import SqlTree, split_statements

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TREE = SqlTree.load()


def tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' provides it")
    return found


def test_sqlfluff_is_clean_over_sql() -> None:
    res = subprocess.run(
        [tool("sqlfluff"), "lint", "sql", "--format", "json", "--processes", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(res.stdout)
    problems = [
        f"{f['filepath']}:{v['start_line_no']}: {v['code']} {v['description']}"
        for f in report
        for v in f["violations"]
    ]
    assert len(report) == len(list((ROOT / "sql").rglob("*.sql")))
    assert problems == [], "\n".join(problems)


def _functions() -> list[tuple[str, int, str]]:
    out = []
    for f in TREE.all_files():
        for st in split_statements(f.text):
            if re.match(r"CREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE)\b", st.text, re.I):
                out.append((f.name, st.line, st.text))
    return out


FUNCTIONS = _functions()


def test_there_are_functions_to_check() -> None:
    assert len(FUNCTIONS) >= 20


@pytest.mark.parametrize(
    "name,line,text", FUNCTIONS, ids=[f"{n}:{line}" for n, line, _ in FUNCTIONS]
)
def test_function_body_parses_and_follows_the_conventions(name: str, line: int, text: str) -> None:
    assert re.search(r"LANGUAGE\s+plpgsql", text, re.I), "functions are written in PL/pgSQL"
    pglast.parse_plpgsql(text)
    assert re.search(r"SET\s+search_path\s*=\s*pg_catalog,\s*pg_temp\s*$", text, re.I | re.M), (
        f"{name}:{line}: SET search_path = pg_catalog, pg_temp (CONTRIBUTING.md, Security)"
    )
    assert re.search(r"SECURITY\s+DEFINER", text, re.I)
    # A one-line comment saying what the function answers sits right above it.
    source = (ROOT / "sql" / name).read_text().splitlines()
    above = source[line - 2].strip() if line >= 2 else ""
    assert above.startswith("-- "), f"{name}:{line}: no comment line above the function"
    # No SQL built from strings inside the body.
    assert not re.search(r"\bEXECUTE\s+(format|'|\$|\w+\s*\|\|)", text, re.I), (
        f"{name}:{line}: dynamic SQL"
    )


def test_plpgsql_check_finds_no_error(new_db) -> None:
    dsn = new_db()
    with psycopg.connect(dsn, row_factory=dict_row, autocommit=True) as conn:
        try:
            conn.execute("CREATE SCHEMA plpgsql_check")
            conn.execute("CREATE EXTENSION plpgsql_check WITH SCHEMA plpgsql_check")
        except psycopg.Error:
            major = conn.info.server_version // 10000
            pytest.fail(
                f"plpgsql_check is not installed: run `make test` as root (scripts/setup-system "
                f"installs it) or apt-get install postgresql-{major}-plpgsql-check",
                pytrace=False,
            )
        rows = conn.execute(
            """
            SELECT p.oid::regprocedure::text AS function, r.lineno, r.sqlstate, r.message,
                   r.level
            FROM pg_proc AS p
            JOIN pg_language AS l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
            CROSS JOIN LATERAL plpgsql_check.plpgsql_check_function_tb(
                p.oid,
                coalesce((SELECT t.tgrelid FROM pg_trigger AS t WHERE t.tgfoid = p.oid LIMIT 1), 0)
            ) AS r
            WHERE p.pronamespace = 'public'::regnamespace
            """
        ).fetchall()
        checked = conn.execute(
            """
            SELECT count(*) AS n FROM pg_proc AS p
            JOIN pg_language AS l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
            WHERE p.pronamespace = 'public'::regnamespace
            """
        ).fetchone()["n"]
    errors = [r for r in rows if r["level"] == "error"]
    assert checked >= 20
    assert errors == [], "\n".join(
        f"{r['function']} line {r['lineno']}: {r['sqlstate']} {r['message']}" for r in errors
    )


def test_squawk_finds_no_unsafe_ddl_in_upgrades() -> None:
    scripts = [str(f.path) for f in TREE.upgrades]
    assert scripts, "no upgrade scripts to check"
    res = subprocess.run(
        [tool("squawk"), "--pg-version", "15", *scripts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_harness_builds_no_sql_from_strings() -> None:
    pattern = re.compile(
        r"(execute|executemany)\(\s*f[\"']"
        r"|\.format\(.*(SELECT|INSERT|UPDATE|DELETE)"
        r"|[\"'](SELECT|INSERT|UPDATE|DELETE)[^\"']*[\"']\s*%"
    )
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in (ROOT / "harness").rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_python_has_no_errors_pyflakes_would_find() -> None:
    res = subprocess.run(
        [tool("ruff"), "check", "--select", "F,E9", "--output-format", "concise",
         "harness", "tests", "bench"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
