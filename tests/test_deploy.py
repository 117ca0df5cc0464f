"""Deploy: fresh install, idempotence, upgrades, refusals, rollback, concurrency, drift."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from cli_runner import run_cli
from movedisk.deploy import DEPLOY_LOCK, catalog_snapshot, deploy
from movedisk.errors import DeployError
from movedisk.sqlfiles import SqlTree, sql_dir


def connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, row_factory=dict_row)


def snapshot(dsn: str) -> dict[tuple[str, str], str]:
    with connect(dsn) as conn:
        return catalog_snapshot(conn)


def versions(dsn: str) -> list[tuple[str, str]]:
    with connect(dsn) as conn:
        rows = conn.execute("SELECT script, checksum FROM schema_version ORDER BY id").fetchall()
    return [(r["script"], r["checksum"]) for r in rows]


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    """A private copy of sql/ that a test may change."""
    dst = tmp_path / "sql"
    shutil.copytree(sql_dir(), dst)
    return dst


def add_upgrade(root: Path, name: str, text: str) -> None:
    (root / "upgrade").mkdir(exist_ok=True)
    (root / "upgrade" / name).write_text(text)


def next_number(root: Path) -> int:
    existing = [int(p.name[:4]) for p in (root / "upgrade").glob("*.sql")]
    return max(existing, default=0) + 1


def test_fresh_deploy_creates_schema_and_records_upgrades(new_db) -> None:
    dsn = new_db(deployed=False)
    with connect(dsn) as conn:
        report = deploy(conn)
    tree = SqlTree.load()
    assert report.mode == "fresh"
    assert report.upgrades_marked == [f.name for f in tree.upgrades]
    assert versions(dsn) == [(f.name, f.checksum) for f in tree.upgrades]
    snap = snapshot(dsn)
    assert ("relation", "schema_version") in snap
    assert report.functions == sum(1 for k in snap if k[0] == "routine")
    with connect(dsn) as conn:
        roles = {
            r["rolname"]
            for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE 'movedisk_%'"
            ).fetchall()
        }
    assert roles == {"movedisk_owner", "movedisk_engine", "movedisk_dba"}


def test_redeploy_changes_nothing(new_db, pg_cluster) -> None:
    dsn = new_db()
    before = snapshot(dsn)
    dump_before = pg_dump(pg_cluster, dsn)
    rows_before = versions(dsn)
    with connect(dsn) as conn:
        report = deploy(conn)
    assert report.mode == "upgrade"
    assert report.upgrades_applied == []
    assert report.changes == []
    assert snapshot(dsn) == before
    assert versions(dsn) == rows_before
    assert pg_dump(pg_cluster, dsn) == dump_before


def pg_dump(cluster, dsn: str) -> str:
    """The schema as pg_dump prints it (privileges included), without its variable header."""
    out = subprocess.run(
        [str(cluster.binaries.program("pg_dump")), "--schema-only", "-d", dsn],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    variable = ("-- Dumped", "\\restrict", "\\unrestrict")  # versions, per-run random keys
    return "\n".join(line for line in out.splitlines() if not line.startswith(variable))


def test_edited_applied_script_is_refused_and_nothing_changes(new_db, sql_copy: Path) -> None:
    dsn = new_db()
    name = f"{next_number(sql_copy):04d}_add_note.sql"
    add_upgrade(sql_copy, name, "CREATE TABLE deploy_note (id INT PRIMARY KEY);\n")
    with connect(dsn) as conn:
        assert deploy(conn, tree=SqlTree.load(sql_copy)).upgrades_applied == [f"upgrade/{name}"]
    before, rows = snapshot(dsn), versions(dsn)
    add_upgrade(sql_copy, name, "CREATE TABLE deploy_note (id BIGINT PRIMARY KEY);\n")
    with connect(dsn) as conn, pytest.raises(DeployError) as err:
        deploy(conn, tree=SqlTree.load(sql_copy))
    assert f"upgrade/{name} was edited after it was applied" in err.value.message
    assert snapshot(dsn) == before and versions(dsn) == rows


def test_removed_applied_script_is_refused(new_db, sql_copy: Path) -> None:
    dsn = new_db()
    name = f"{next_number(sql_copy):04d}_add_note.sql"
    add_upgrade(sql_copy, name, "CREATE TABLE deploy_note (id INT PRIMARY KEY);\n")
    with connect(dsn) as conn:
        deploy(conn, tree=SqlTree.load(sql_copy))
    (sql_copy / "upgrade" / name).unlink()
    with connect(dsn) as conn, pytest.raises(DeployError, match="must never be removed"):
        deploy(conn, tree=SqlTree.load(sql_copy))


def test_failing_script_rolls_back_whole_and_names_file_and_line(new_db, sql_copy: Path) -> None:
    dsn = new_db()
    before, rows = snapshot(dsn), versions(dsn)
    n = next_number(sql_copy)
    add_upgrade(sql_copy, f"{n:04d}_good.sql", "CREATE TABLE deploy_good (id INT);\n")
    add_upgrade(
        sql_copy,
        f"{n + 1:04d}_bad.sql",
        "CREATE TABLE deploy_first (id INT);\n\nINSERT INTO deploy_first (id)\nSELECT id\n"
        "FROM deploy_missing;\n",
    )
    with connect(dsn) as conn, pytest.raises(DeployError) as err:
        deploy(conn, tree=SqlTree.load(sql_copy))
    assert err.value.message == (
        f'upgrade/{n + 1:04d}_bad.sql:5: relation "deploy_missing" does not exist'
    )
    assert snapshot(dsn) == before and versions(dsn) == rows


def test_error_inside_a_function_body_names_its_line(new_db, sql_copy: Path) -> None:
    dsn = new_db()
    before = snapshot(dsn)
    (sql_copy / "procedures" / "zz_broken_sp.sql").write_text(
        "-- Broken: a body with a syntax error on file line 8.\n"
        "CREATE OR REPLACE FUNCTION Broken()\n"
        "RETURNS INT\n"
        "LANGUAGE plpgsql\n"
        "AS $procedure$\n"
        "BEGIN\n"
        "    RETURN 1;\n"
        "    RETRUN 2;\n"
        "END;\n"
        "$procedure$;\n"
    )
    with connect(dsn) as conn, pytest.raises(DeployError) as err:
        deploy(conn, tree=SqlTree.load(sql_copy))
    assert err.value.message.startswith("procedures/zz_broken_sp.sql:8: "), err.value.message
    assert snapshot(dsn) == before


def test_function_removed_from_the_files_disappears(new_db, sql_copy: Path) -> None:
    dsn = new_db()
    extra = sql_copy / "procedures" / "zz_extra_sp.sql"
    extra.write_text(
        "-- ExtraAnswer: forty-two.\n"
        "CREATE OR REPLACE FUNCTION ExtraAnswer(v_x INT DEFAULT 0)\n"
        "RETURNS INT LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER\n"
        "SET search_path = public, pg_temp\n"
        "AS $procedure$ BEGIN RETURN 42 + v_x; END; $procedure$;\n"
    )
    with connect(dsn) as conn:
        deploy(conn, tree=SqlTree.load(sql_copy))
        assert conn.execute("SELECT ExtraAnswer() AS a").fetchone() == {"a": 42}
    extra.unlink()
    with connect(dsn) as conn:
        report = deploy(conn, tree=SqlTree.load(sql_copy))
        assert conn.execute("SELECT to_regproc('extraanswer') AS p").fetchone() == {"p": None}
    assert "- routine extraanswer(integer)" in report.changes


def test_two_concurrent_deploys_do_not_interleave(new_db) -> None:
    dsn = new_db(deployed=False)
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(dsn) as conn:
                reports.append(deploy(conn))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with psycopg.connect(dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (DEPLOY_LOCK,))
        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        # Both deploys are now waiting on the advisory lock.
        waiting = 0
        for _ in range(200):
            waiting = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0]
            if waiting == 2:
                break
            threading.Event().wait(0.02)
        assert waiting == 2
        holder.execute("SELECT pg_advisory_unlock(%s)", (DEPLOY_LOCK,))
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(r.mode for r in reports) == ["fresh", "upgrade"]
    tree = SqlTree.load()
    assert versions(dsn) == [(f.name, f.checksum) for f in tree.upgrades]


def test_check_reports_up_to_date_pending_and_drift(new_db, sql_copy: Path) -> None:
    dsn = new_db()
    env_run = _cli_runner(dsn)
    assert env_run(["deploy", "--check"]).returncode == 0

    with connect(dsn) as conn:
        conn.execute("REVOKE EXECUTE ON FUNCTION getimagebyimageguid(uuid) FROM movedisk_engine")
        conn.commit()
    before = snapshot(dsn)
    res = env_run(["deploy", "--check"])
    assert res.returncode == 1
    assert "drift: ~ routine getimagebyimageguid(uuid)" in res.stdout
    assert snapshot(dsn) == before  # --check changed nothing

    name = f"{next_number(sql_copy):04d}_pending.sql"
    add_upgrade(sql_copy, name, "CREATE TABLE deploy_pending (id INT);\n")
    res = env_run(["deploy", "--check"], sql=sql_copy)
    assert res.returncode == 1 and f"pending upgrade: upgrade/{name}" in res.stdout
    assert env_run(["deploy"], sql=sql_copy).returncode == 0
    assert env_run(["deploy", "--check"], sql=sql_copy).returncode == 0


def _cli_runner(dsn: str):
    def run(args: list[str], sql: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {"MOVEDISK_DSN": dsn, **({"MOVEDISK_SQL_DIR": str(sql)} if sql else {})}
        return run_cli(*args, env=env)

    return run


def test_privileges_engine_executes_only_dba_reads_views_public_nothing(db) -> None:
    from feature_rows import setup

    disk = setup(db).disk.disk_id  # one disk, so that what each role sees can be compared
    public_grants = db.execute(
        """
        SELECT count(*) AS n FROM (
            SELECT (aclexplode(coalesce(proacl, acldefault('f', proowner)))).grantee AS g
            FROM pg_proc WHERE pronamespace = 'public'::regnamespace
            UNION ALL
            SELECT (aclexplode(coalesce(relacl, acldefault('r', relowner)))).grantee
            FROM pg_class WHERE relnamespace = 'public'::regnamespace
        ) AS acl WHERE g = 0
        """
    ).fetchone()
    assert public_grants == {"n": 0}
    # The schema keeps the privileges it had (PostgreSQL 15's default: PUBLIC may use it).
    assert db.execute(
        "SELECT nspacl::text AS acl FROM pg_namespace WHERE nspname = 'public'"
    ).fetchone()["acl"].startswith("{pg_database_owner=UC/pg_database_owner,=U/pg_database_owner")
    db.execute("SET LOCAL ROLE movedisk_engine")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with db.transaction():
            db.execute("SELECT * FROM schema_version")
    rows = db.execute("SELECT disk_id FROM GetAllFromDisks(NULL, FALSE)").fetchall()
    assert disk in {r["disk_id"] for r in rows}
    db.execute("RESET ROLE")
    db.execute("SET LOCAL ROLE movedisk_dba")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with db.transaction():
            db.execute("SELECT * FROM schema_version")
    assert db.execute("SELECT count(*) AS n FROM all_disks WHERE disk_id = %s", (disk,)
                      ).fetchone() == {"n": 1}
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with db.transaction():
            db.execute("SELECT * FROM GetAllFromDisks(NULL, FALSE)")


def test_every_function_is_owned_by_the_package_role_with_a_safe_search_path(db) -> None:
    """Every function the package recorded: SECURITY DEFINER owned by movedisk_owner (no
    superuser, nothing but DML on the package's tables), search_path exactly pg_catalog,
    pg_temp, EXECUTE for movedisk_engine (but a trigger function, which only its trigger
    calls: no role's) and not for PUBLIC."""
    rows = db.execute(
        """
        SELECT p.oid::regprocedure::text AS f, p.prosecdef, p.proconfig,
               p.prorettype = 'trigger'::regtype AS is_trigger,
               p.proowner::regrole::text AS owner,
               has_function_privilege('movedisk_engine', p.oid, 'EXECUTE') AS engine,
               EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                       WHERE a.grantee = 0) AS public
        FROM pg_proc AS p
        JOIN package_objects AS o
            ON o.object_type = 'function' AND o.object_identity::regprocedure = p.oid
        """
    ).fetchall()
    assert len(rows) >= 100
    wrong = [
        r["f"] for r in rows
        if not r["prosecdef"] or r["proconfig"] != ["search_path=pg_catalog, pg_temp"]
        or r["owner"] != "movedisk_owner" or r["engine"] == r["is_trigger"] or r["public"]
    ]
    assert wrong == []
    assert any(r["is_trigger"] for r in rows)
    owner = db.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin FROM pg_roles "
        "WHERE rolname = 'movedisk_owner'"
    ).fetchone()
    assert not any(owner.values())
    # It may write the package's tables, and create nothing anywhere.
    assert db.execute(
        "SELECT has_schema_privilege('movedisk_owner', 'public', 'CREATE') AS c"
    ).fetchone() == {"c": False}


def test_every_table_and_its_key_columns_are_commented(db) -> None:
    missing = db.execute(
        """
        SELECT c.relname || coalesce('.' || a.attname, '') AS obj
        FROM pg_class c
        LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
          AND (obj_description(c.oid, 'pg_class') IS NULL
               OR (a.attnum IS NOT NULL AND col_description(c.oid, a.attnum) IS NULL))
        ORDER BY 1
        """
    ).fetchall()
    assert [r["obj"] for r in missing] == []
