"""Every error a user can cause through ``movedisk deploy`` is one line with its own exit
code, and leaves the database as it was; deploy never queues the engine for long, names its
target, and leaves the caller's session settings as they were."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from cli_runner import run_cli
from movedisk.deploy import catalog_snapshot, deploy
from movedisk.pgserver import ThrowawayCluster
from movedisk.sqlfiles import sql_dir


def state(dsn: str) -> tuple[Any, ...]:
    """What a user would see changed: the catalog and the recorded scripts and objects."""
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        snap = catalog_snapshot(conn)
        rows = conn.execute("SELECT * FROM schema_version ORDER BY id").fetchall()
        objects = conn.execute(
            "SELECT object_type, object_identity, statement_hash, definition_hash "
            "FROM package_objects ORDER BY 1, 2"
        ).fetchall()
    return snap, rows, objects


@pytest.fixture(scope="module")
def password_role(pg_cluster: ThrowawayCluster) -> str:
    """A role that must give its password over TCP (scram), on the session's cluster."""
    hba = pg_cluster.base / "data" / "pg_hba.conf"
    text = hba.read_text()
    if "movedisk_pw" not in text:
        hba.write_text("host all movedisk_pw 127.0.0.1/32 scram-sha-256\n" + text)
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute(
            "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'movedisk_pw') "
            "THEN CREATE ROLE movedisk_pw LOGIN PASSWORD 'right'; END IF; END$$"
        )
        conn.execute(
            "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'movedisk_plain') "
            "THEN CREATE ROLE movedisk_plain LOGIN; END IF; END$$"
        )
        conn.execute("SELECT pg_reload_conf()")
    return "movedisk_pw"


def _broken_tree(tmp_path: Path) -> Path:
    copy = tmp_path / "sql"
    shutil.copytree(sql_dir(), copy)
    (copy / "procedures" / "zz_broken_sp.sql").write_text(
        "-- Broken: reads a table that does not exist.\n"
        "CREATE OR REPLACE FUNCTION Broken()\n"
        "RETURNS BIGINT LANGUAGE sql STABLE\n"
        "SET search_path = pg_catalog, pg_temp\n"
        "AS $procedure$ SELECT count(*) FROM public.no_such_table $procedure$;\n"
    )
    return copy


# (case, how to break the deploy, error type, exit code, what the line says)
CASES: list[tuple[str, str, int, str]] = [
    ("malformed_dsn", "InvalidDsn", 22, "cannot read the connection string"),
    ("unreachable", "ConnectionFailed", 12, "Connection refused"),
    ("wrong_password", "AuthenticationFailed", 23, "password authentication failed"),
    ("read_only", "NotPrimary", 20, "read-only"),
    ("no_privilege", "PermissionDenied", 24, "permission denied"),
    ("lock_timeout", "LockTimeout", 25, "waiting for a lock on view all_disks; held by pid"),
    ("failing_statement", "DeployError", 10, "procedures/zz_broken_sp.sql:5: relation"),
]


@pytest.mark.parametrize("case,error,code,says", CASES, ids=[c[0] for c in CASES])
def test_each_error_is_one_line_with_its_code_and_changes_nothing(
    case: str, error: str, code: int, says: str, new_db: Callable[..., str],
    pg_cluster: ThrowawayCluster, password_role: str, tmp_path: Path,
) -> None:
    dsn = new_db()
    port = pg_cluster.port
    dbname = dsn.rsplit("dbname=", 1)[1]
    env: dict[str, str] = {}
    target = dsn
    reader: psycopg.Connection[Any] | None = None
    if case == "malformed_dsn":
        target = "garbage=="
    elif case == "unreachable":
        target = "host=127.0.0.1 port=1 dbname=x connect_timeout=2"
    elif case == "wrong_password":
        target = f"host=127.0.0.1 port={port} dbname={dbname} user={password_role} password=wrong"
    elif case == "read_only":
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {dbname} SET default_transaction_read_only = on")
    elif case == "no_privilege":
        target = f"host=127.0.0.1 port={port} dbname={dbname} user=movedisk_plain"
    elif case == "lock_timeout":
        # all_disks's definition changed (as an upgrade would change it) while a reader has
        # it open: the deploy must wait for it, and gives up after its lock timeout.
        with psycopg.connect(dsn) as conn:
            conn.execute(
                "UPDATE package_objects SET statement_hash = 'changed' "
                "WHERE object_identity = 'public.all_disks'"
            )
        reader = psycopg.connect(dsn)
        reader.execute("SELECT count(*) FROM all_disks").fetchone()
    elif case == "failing_statement":
        env["MOVEDISK_SQL_DIR"] = str(_broken_tree(tmp_path))
    before = state(dsn)
    try:
        args = ["deploy", "--dsn", target]
        if case == "lock_timeout":
            args += ["--lock-timeout", "0.5"]
        t0 = time.perf_counter()
        res = run_cli(*args, env=env)
        elapsed = time.perf_counter() - t0
        lines = res.stderr.strip().splitlines()
        assert res.returncode == code, res.stderr
        assert len(lines) == 1 and lines[0].startswith(f"movedisk: {error}: "), res.stderr
        assert says in lines[0], lines[0]
        assert "Traceback" not in res.stderr and res.stdout == ""
        if case == "lock_timeout":
            assert elapsed < 10
            # The reader was never disturbed, and lookups keep answering.
            assert reader is not None
            reader.execute("SELECT count(*) FROM all_disks").fetchone()
            with psycopg.connect(dsn) as other:
                other.execute("SELECT * FROM GetAllFromDisks(NULL, FALSE)").fetchall()
        res = run_cli("--json", *args, env=env)
        assert res.returncode == code and json.loads(res.stdout)["error"] == error
    finally:
        if reader is not None:
            reader.close()
        if case == "read_only":
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SET default_transaction_read_only = off")
                conn.execute(f"ALTER DATABASE {dbname} RESET default_transaction_read_only")
    assert state(dsn) == before


def test_lookups_wait_no_longer_than_the_lock_timeout_while_deploy_waits(new_db) -> None:
    dsn = new_db()
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE package_objects SET statement_hash = 'changed' "
            "WHERE object_identity = 'public.all_disks'"
        )
    reader = psycopg.connect(dsn)
    reader.execute("SELECT count(*) FROM all_disks").fetchone()
    waits: list[float] = []

    def lookup() -> None:
        time.sleep(0.3)  # the deploy is queued behind the reader by now
        with psycopg.connect(dsn) as conn:
            t0 = time.perf_counter()
            conn.execute("SELECT * FROM GetAllFromDisks(NULL, FALSE)").fetchall()
            waits.append(time.perf_counter() - t0)

    thread = threading.Thread(target=lookup)
    thread.start()
    try:
        res = run_cli("deploy", "--dsn", dsn, "--lock-timeout", "1")
    finally:
        thread.join(30)
        reader.close()
    assert res.returncode == 25
    assert waits and waits[0] < 1.5  # queued behind the deploy at most until it gave up


def test_deploy_leaves_the_callers_session_settings_as_they_were(release_1_dsn: str) -> None:
    # Release 1's database: the deploy runs upgrade 0001, which ends with a session RESET.
    with psycopg.connect(release_1_dsn, row_factory=dict_row) as conn:
        conn.execute("SET lock_timeout = '7s'")
        conn.execute("SET statement_timeout = '9s'")
        conn.execute("SET search_path = pg_catalog, public")
        conn.commit()
        report = deploy(conn)
        conn.commit()
        assert "upgrade/0001_images_to_be_deleted.sql" in report.upgrades_applied
        settings = conn.execute(
            "SELECT current_setting('lock_timeout') AS l, current_setting('statement_timeout') AS s, "
            "current_setting('search_path') AS p"
        ).fetchone()
    assert settings == {"l": "7s", "s": "9s", "p": "pg_catalog, public"}


def test_without_a_target_deploy_asks_for_one(tmp_path: Path) -> None:
    res = run_cli("deploy", env={"MOVEDISK_HOME": str(tmp_path / "home")})
    assert res.returncode == 21
    assert res.stderr.strip() == (
        "movedisk: NoTarget: no database given: pass --dsn (or set MOVEDISK_DSN or the PG* "
        "variables) for the engine's database, or --embedded for the embedded cluster"
    )
    assert not (tmp_path / "home").exists()  # no embedded cluster was started behind its back
