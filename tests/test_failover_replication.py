"""A primary and its streaming standby: replication, promote, lag, and the primary guard.

Every test gets its own throwaway pair (``replicated_cluster``): a promote cannot be undone.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from cli_runner import run_cli
REPLICATED_DB = "movedisk"  # the database replicated_cluster deploys (tests/conftest.py)
from feature_rows import LOCKED, make_disk, move_phase1, setup
from movedisk import db as mdb
from movedisk.errors import ConnectionFailed, NotPrimary
from movedisk.replication import server_role


def rows_on(dsn: str, query: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row, autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []


def test_standby_replays_and_the_dba_verifies_there(replicated_cluster) -> None:
    cluster = replicated_cluster()
    with psycopg.connect(cluster.dsn(REPLICATED_DB), row_factory=dict_row) as conn:
        s = setup(conn)
        move_phase1(conn, s)
        stuck = make_disk(conn, s.src, quota=s.quota, alias="stuck")
        # A disk left LOCKED by no move and no command: what VerifyAll exists to find.
        conn.execute("UPDATE images SET imagestatus = %s WHERE image_group_id = %s",
                     (LOCKED, stuck.disk_id))
        conn.commit()
    cluster.wait_replayed()
    standby = cluster.standby.dsn(REPLICATED_DB)
    statuses = rows_on(
        standby, "SELECT imagestatus FROM images WHERE image_group_id = %s", s.disk.disk_id
    )
    assert [r["imagestatus"] for r in statuses] == [LOCKED, LOCKED]
    # The DBA's read-only checks run on the standby and see the move in flight.
    with psycopg.connect(standby, row_factory=dict_row, autocommit=True) as conn:
        conn.execute("SET ROLE movedisk_dba")
        findings = conn.execute("SELECT check_name, entity_id FROM VerifyAll()").fetchall()
        usage = conn.execute("SELECT count(*) AS n FROM storage_domain_usage_view").fetchone()
        conn.execute("RESET ROLE")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)",
                         (s.disk.disk_id, s.src, s.dest))
    assert [(f["check_name"], f["entity_id"]) for f in findings] == [
        ("locked_image_without_command", stuck.disk_id)]  # the move in flight is no finding
    assert usage["n"] >= 2


def test_standby_reports_how_far_it_lags(replicated_cluster) -> None:
    cluster = replicated_cluster()
    primary = cluster.primary.dsn(REPLICATED_DB)
    rows_on(primary, "CREATE TABLE filler (x int)")
    cluster.wait_replayed()
    with psycopg.connect(cluster.standby.dsn(REPLICATED_DB)) as conn:
        caught_up = server_role(conn)
    assert caught_up.in_recovery and caught_up.wal_receiver == "streaming"
    assert caught_up.receive_lsn == caught_up.replay_lsn and caught_up.replay_lag_bytes == 0
    assert caught_up.last_replayed_commit_at is not None
    assert caught_up.timeline == 1
    # A role without pg_read_all_stats (a DBA's login) sees the same, less the receiver's state.
    rows_on(primary, "CREATE ROLE plain_dba LOGIN IN ROLE movedisk_dba")
    cluster.wait_replayed()
    with psycopg.connect(cluster.standby.dsn(REPLICATED_DB, user="plain_dba")) as conn:
        plain = server_role(conn)
    assert (plain.in_recovery, plain.timeline, plain.wal_receiver) == (True, 1, "running")
    assert plain.replay_lag_bytes == 0

    cluster.cut_replication()
    rows_on(primary, "INSERT INTO filler SELECT generate_series(1, 20000)")
    ahead = rows_on(primary, "SELECT pg_current_wal_lsn()::text AS lsn")[0]["lsn"]
    with psycopg.connect(cluster.standby.dsn(REPLICATED_DB)) as conn:
        behind = server_role(conn)
        missing = conn.execute(
            "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_receive_lsn())", (ahead,)
        ).fetchone()[0]
    assert behind.wal_receiver is None and missing > 100_000  # the rows never arrived

    res = run_cli("db", "replication", "--json", "--dsn", cluster.dsn(REPLICATED_DB))
    assert res.returncode == 0, res.stderr
    report = {r["port"]: r for r in json.loads(res.stdout)}
    assert report[str(cluster.primary.port)]["role"] == "primary"
    assert report[str(cluster.standby.port)]["role"] == "standby"
    assert "WAL receiver not running" in report[str(cluster.standby.port)]["summary"]
    # movedisk verify on the standby says how far behind its findings are.
    res = run_cli("verify", "--db-only", "--json", "--dsn", cluster.standby.dsn(REPLICATED_DB))
    assert res.returncode == 0, res.stdout + res.stderr
    server = json.loads(res.stdout)["server"]
    assert server["role"] == "standby" and server["wal_receiver"] is None
    assert server["receive_lsn"] == behind.receive_lsn
    res = run_cli("verify", "--db-only", "--dsn", cluster.standby.dsn(REPLICATED_DB))
    assert res.stdout.startswith(f"on a standby: 127.0.0.1:{cluster.standby.port}: standby on "
                                 "timeline 1, received ")
    res = run_cli("verify", "--db-only", "--dsn", cluster.dsn(REPLICATED_DB))
    assert res.stdout.startswith("verify: no findings (database)")
    # Only the standby in the DSN: a report, exit 1 (no primary there).
    res = run_cli("db", "replication", "--dsn", cluster.standby.dsn(REPLICATED_DB))
    assert res.returncode == 1 and "standby on timeline 1, received" in res.stdout


def test_synchronous_commit_waits_for_the_standby(replicated_cluster) -> None:
    cluster = replicated_cluster(synchronous=True)
    primary = cluster.primary.dsn(REPLICATED_DB)
    standby = cluster.standby
    rows_on(primary, "CREATE TABLE t (x int)")
    standby.sql("SELECT pg_wal_replay_pause()", dbname=REPLICATED_DB)
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        committed = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    # Acknowledged only once the standby had flushed it, even with its replay paused.
    assert standby.sql("SELECT pg_last_wal_receive_lsn() >= %s::pg_lsn", committed)[0][0]
    standby.crash()
    done = threading.Event()

    def commit() -> None:
        try:
            rows_on(primary, "INSERT INTO t VALUES (2)")
        except psycopg.Error:
            pass
        done.set()

    threading.Thread(target=commit, daemon=True).start()
    assert not done.wait(1.0), "a synchronous commit returned with its standby down"
    cluster.primary.sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
                        "WHERE wait_event = 'SyncRep'")
    assert done.wait(10)


def test_promote_and_the_multi_host_dsn_follows(replicated_cluster) -> None:
    cluster = replicated_cluster(synchronous=True)
    dsn = cluster.dsn(REPLICATED_DB)
    rows_on(dsn, "CREATE TABLE t (x int)")
    rows_on(dsn, "INSERT INTO t VALUES (1)")
    standby_port = cluster.standby.port
    seconds = cluster.failover()
    assert seconds < 5
    with psycopg.connect(dsn) as conn:
        role = mdb.primary_transaction(lambda c: server_role(c), dsn)
        assert conn.info.port == standby_port
    assert role.timeline == 2 and not role.in_recovery
    assert rows_on(dsn, "SELECT x FROM t") == [{"x": 1}]  # synchronous: nothing lost
    rows_on(dsn, "INSERT INTO t VALUES (2)")


def test_asynchronous_failover_loses_what_the_standby_never_received(replicated_cluster) -> None:
    cluster = replicated_cluster()
    dsn = cluster.dsn(REPLICATED_DB)
    rows_on(dsn, "CREATE TABLE t (x int)")
    rows_on(dsn, "INSERT INTO t VALUES (1)")
    cluster.wait_replayed()
    cluster.cut_replication()
    for i in range(2, 6):
        rows_on(dsn, "INSERT INTO t VALUES (%s)", i)  # acknowledged to the client
    cluster.failover()
    assert rows_on(dsn, "SELECT x FROM t") == [{"x": 1}]


def test_a_standby_refuses_state_changes_and_nothing_changes(replicated_cluster) -> None:
    cluster = replicated_cluster()
    calls = []
    with pytest.raises(NotPrimary, match="is a standby"):
        mdb.primary_transaction(lambda c: calls.append(1), cluster.standby.dsn(REPLICATED_DB))
    assert calls == []
    res = run_cli("db", "replication", "--json", "--dsn", cluster.standby.dsn(REPLICATED_DB))
    assert json.loads(res.stdout)[0]["role"] == "standby"
    res = run_cli("deploy", "--dsn", cluster.standby.dsn(REPLICATED_DB))
    assert res.returncode == 20 and res.stderr.startswith("movedisk: NotPrimary: ")
    assert "is a standby (in recovery)" in res.stderr and len(res.stderr.splitlines()) == 1


def test_an_old_primary_restarted_by_mistake_refuses_to_change_state(replicated_cluster) -> None:
    cluster = replicated_cluster()
    old = cluster.primary
    cluster.failover()
    new = cluster.primary
    cluster.restart_old_primary()  # split brain: two read-write servers
    old_first = psycopg.conninfo.make_conninfo(cluster.dsn(REPLICATED_DB))
    assert f"port={old.port},{new.port}" in old_first
    with psycopg.connect(old_first) as conn:
        assert conn.info.port == old.port  # libpq alone takes the old primary: it is read-write
    calls: list[int] = []
    with pytest.raises(NotPrimary, match=f"on timeline 1 but 127.0.0.1:{new.port} .primary. is on timeline 2"):
        mdb.primary_transaction(lambda c: calls.append(c.info.port), old_first)
    assert calls == []
    res = run_cli("deploy", "--json", "--dsn", old_first)
    assert res.returncode == 20 and json.loads(res.stdout)["code"] == "MD120"
    # The same DSN with the servers the other way round reaches the new primary and works.
    new_first = cluster.dsn(REPLICATED_DB).replace(
        f"port={old.port},{new.port}", f"port={new.port},{old.port}"
    )
    assert mdb.primary_transaction(lambda c: c.info.port, new_first) == new.port


def test_transactions_follow_the_primary_through_a_failover(replicated_cluster) -> None:
    cluster = replicated_cluster(synchronous=True)
    dsn = cluster.dsn(REPLICATED_DB)
    rows_on(dsn, "CREATE TABLE t (x int PRIMARY KEY)")
    acknowledged: list[int] = []
    retries: list[float] = []
    stop = threading.Event()

    def insert(n: int):
        def fn(conn: psycopg.Connection[Any]) -> None:
            # Decide from what the database says: a re-run after an ambiguous commit
            # finds its row and does nothing.
            if conn.execute("SELECT 1 FROM t WHERE x = %s", (n,)).fetchone() is None:
                conn.execute("INSERT INTO t VALUES (%s)", (n,))
        return fn

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            mdb.primary_transaction(insert(n), dsn,
                                    on_retry=lambda i, pause, exc: retries.append(pause))
            acknowledged.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.3)
    before = len(acknowledged)
    cluster.failover()
    time.sleep(0.5)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    assert retries, "the failover went unnoticed"
    assert len(acknowledged) > before
    on_new = [r["x"] for r in rows_on(dsn, "SELECT x FROM t ORDER BY x")]
    assert on_new == acknowledged  # every acknowledged commit, each once, none lost


def test_retries_are_bounded_and_end_with_a_clear_error(replicated_cluster) -> None:
    cluster = replicated_cluster()
    dsn = cluster.dsn(REPLICATED_DB)
    cluster.standby.crash()
    cluster.primary.crash()
    backoff = mdb.Backoff(attempts=4, initial=0.05, ceiling=0.2, deadline=5)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match=r"gave up reaching the primary after 4 attempts"):
        mdb.primary_transaction(lambda c: None, dsn, backoff=backoff)
    assert time.monotonic() - started < 3
    # A user error is not retried: it goes through on the first attempt.
    attempts: list[int] = []
    with pytest.raises(ValueError):
        mdb.retrying(lambda: attempts.append(1) or (_ for _ in ()).throw(ValueError("no")))
    assert attempts == [1]


def test_a_session_reconnects_to_the_promoted_standby(replicated_cluster) -> None:
    cluster = replicated_cluster(synchronous=True)
    with mdb.PrimarySession(cluster.dsn(REPLICATED_DB)) as session:
        session.conn.execute("CREATE TABLE t (x int)")
        first_port = session.conn.info.port
        cluster.failover()
        with pytest.raises(psycopg.OperationalError) as lost:
            session.conn.execute("INSERT INTO t VALUES (1)")
        assert mdb.is_transient(lost.value)
        session.reconnect()
        session.conn.execute("INSERT INTO t VALUES (1)")
        assert session.conn.info.port != first_port and session.reconnects == 1


def test_sweep_keeps_a_pair_whose_standby_still_runs(tmp_path) -> None:
    import os

    from movedisk import pgserver

    pair = tmp_path / "movedisk-pg-pair"
    for node, pid in (("primary", 999_999_999), ("standby", os.getpid())):
        (pair / node).mkdir(parents=True)
        (pair / node / "postmaster.pid").write_text(f"{pid}\n")
    template = tmp_path / "movedisk-tpl-old"
    (template / "data").mkdir(parents=True)
    fresh_template = tmp_path / "movedisk-tpl-fresh"
    fresh_template.mkdir()
    old = time.time() - 7200
    for d in (pair, template):
        os.utime(d, (old, old))
    assert pgserver.sweep_stale_clusters(tmp_path) == [template]
    (pair / "standby" / "postmaster.pid").write_text("999999999\n")  # the standby died too
    assert pgserver.sweep_stale_clusters(tmp_path) == [pair]
    assert fresh_template.exists()


@pytest.mark.slow
def test_embedded_standby_promote_and_fence() -> None:
    # On tmpfs and without fsync: what is tested is replication, promote and fencing, not
    # durability (a durable initdb and four checkpoints cost 10-35 s on a busy machine).
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="movedisk-home-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    home.chmod(0o755)  # the server account keeps its cluster under it
    env = {"MOVEDISK_HOME": str(home), "MOVEDISK_DB_NOSYNC": "1"}
    try:
        res = run_cli("db", "start", "--standby", "--json", env=env)
        assert res.returncode == 0, res.stderr
        status = json.loads(res.stdout)
        assert status["standby"]["running"] is True
        dsn = status["dsn"]
        assert "port=5432,5433" in dsn and "target_session_attrs=read-write" in dsn
        rows_on(dsn, "CREATE TABLE kept (x int)")
        rows_on(dsn, "INSERT INTO kept VALUES (1)")
        res = run_cli("db", "replication", "--json", "--dsn", dsn, env=env)
        roles = {r["port"]: r for r in json.loads(res.stdout)}
        assert roles["5432"]["role"] == "primary" and roles["5433"]["role"] == "standby"
        assert roles["5432"]["standbys"][0]["state"] == "streaming"

        res = run_cli("db", "promote", "--json", env=env)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["fenced"].endswith("/pgdata")
        # The fenced old primary is not started again: only the promoted server runs.
        status = json.loads(run_cli("db", "start", "--json", env=env).stdout)
        assert status["datadir"].endswith("pgdata-standby") and "standby" not in status
        assert rows_on(dsn, "SELECT x FROM kept") == [{"x": 1}]  # the same DSN, new primary
        # --standby rebuilds the old primary as the new primary's standby, synchronous here.
        res = run_cli("db", "start", "--standby", "--synchronous", env=env)
        assert res.returncode == 0, res.stderr
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            assert conn.info.port == 5433
            sync = conn.execute("SELECT sync_state FROM pg_stat_replication").fetchall()
        assert sync == [{"sync_state": "sync"}]
        from movedisk.pgserver import EmbeddedCluster

        with psycopg.connect(EmbeddedCluster(home).node("pgdata").dsn("movedisk")) as conn:
            role = server_role(conn)
        assert role.in_recovery and role.timeline == 2
    finally:
        run_cli("db", "stop", env=env)
        state = home / "cluster.json"
        if state.exists():
            shutil.rmtree(json.loads(state.read_text())["root"], ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
