"""Recovery of many moves at once (claims sent a batch at a time, worker threads): every stale
move ends as the storage truth says, each exactly once, a live process's moves are left to it,
and the result is the same with one worker or several."""

from __future__ import annotations

import socket
from collections import Counter
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from test_bench_staging import staging

from movedisk import inventory
from movedisk.engine import recover
from movedisk.engine.move import Engine
from movedisk.engine.store import Store

GONE = f"{socket.gethostname()}:999999999:gone"  # a process of this host that no longer runs
LIVE = "another-host:1:1"  # a process elsewhere whose lease has not expired


def staged(new_db: Any, n: int, live: int = 0) -> tuple[str, Any, list[Any], list[str]]:
    """``n`` moves left by a gone process (and ``live`` by a live one elsewhere), spread over
    the bench's crash points; the database, the in-process agent, the command ids, the points."""
    dsn = new_db()
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        made = inventory.build(conn, None, staging.spec(n + live, "rb"), salt="rb")
    disks = [d["id"] for d in made.disks.values()]
    src, dest = made.domains["S-rb"], made.domains["D-rb"]
    agent = staging.BenchAgent({d["id"]: d["volumes"] for d in made.disks.values()}, src)
    points = [staging.POINTS[i % len(staging.POINTS)] for i in range(n + live)]
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        ids = staging.stage_bulk(conn, agent, list(zip(disks[:n], points[:n])), dest, src, GONE)
        if live:
            staging.stage_bulk(conn, agent, list(zip(disks[n:], points[n:])), dest, src, LIVE)
    return dsn, agent, ids, points[:n]


def run(dsn: str, agent: Any, workers: int) -> tuple[recover.RecoveryReport, list[dict[str, Any]]]:
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    eng = Engine(Store(conn), agent, lease_seconds=60)  # type: ignore[arg-type]
    report = recover.recover(eng, workers=workers, connect=lambda: psycopg.connect(
        dsn, autocommit=True, row_factory=dict_row))
    rows = conn.execute("SELECT command_id, stage, lease_owner, ended_at IS NOT NULL AS ended "
                        "FROM move_disk_commands").fetchall()
    conn.close()
    return report, rows


@pytest.mark.parametrize("workers", [1, 3])
def test_recovery_of_many_moves_in_batches(new_db: Any, workers: int) -> None:
    n = 2 * recover.CLAIM_BATCH + 17  # three claim batches, the last one short
    dsn, agent, ids, points = staged(new_db, n, live=5)
    report, rows = run(dsn, agent, workers)
    assert not report.errors
    finished = Counter(c.command_id for c in report.finished)
    assert set(finished) == set(ids) and max(finished.values()) == 1  # each one once
    by_id = {r["command_id"]: r for r in rows}
    for cid, point in zip(ids, points):
        # No copy was asked after phase 1: compensated; every later point: rolled forward.
        want = "ENDED_FAILURE" if point == "after_phase1_commit" else "ENDED_SUCCESS"
        assert by_id[cid]["stage"] == want, (point, by_id[cid])
    live = [r for r in rows if r["lease_owner"] == LIVE]
    assert len(live) == 5 and not any(r["ended"] for r in live)
    assert len(report.skipped) == 5
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        recovered = conn.execute("SELECT count(*) AS n FROM audit_log WHERE log_type_name = "
                                 "'SYSTEM_MOVED_DISK_RECOVERED'").fetchone()["n"]
        locked = conn.execute(
            "SELECT count(*) AS n FROM images i JOIN move_disk_commands c ON i.image_group_id "
            "IN (c.image_group_id, c.temporary_disk_id) WHERE c.ended_at IS NOT NULL "
            "AND i.imagestatus = 2").fetchone()["n"]
    assert recovered == n  # each takeover recorded once
    assert locked == 0  # no recovered move left a disk LOCKED


def test_a_move_claimed_by_another_process_after_the_listing_is_left_to_it(new_db: Any) -> None:
    dsn, agent, ids, _ = staged(new_db, 10)
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    eng = Engine(Store(conn), agent, lease_seconds=60)  # type: ignore[arg-type]
    listing = eng.store.unfinished_moves

    def listed_then_taken() -> list[Any]:
        moves = listing()
        # Another recovery takes the third move between this one's listing and its claims.
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as other:
            assert Store(other).claim_move(ids[2], "other-host:7:7", 600, GONE) is not None
        return moves

    eng.store.unfinished_moves = listed_then_taken  # type: ignore[method-assign]
    report = recover.recover(eng)
    assert {c.command_id for c in report.finished} == set(ids) - {ids[2]}
    assert [c.command_id for c in report.skipped] == [ids[2]]
    row = conn.execute("SELECT lease_owner, ended_at FROM move_disk_commands "
                       "WHERE command_id = %s", (ids[2],)).fetchone()
    assert row == {"lease_owner": "other-host:7:7", "ended_at": None}
    conn.close()


def test_movedisk_recover_with_workers(world: Any) -> None:
    """Two moves killed at different points, recovered by ``movedisk recover --workers 2``."""
    from cli_runner import run_cli
    from test_bench_staging import killed_at

    killed_at(world, "after_copy_recorded", world.disk("vm1-data"), world.domain("D"))
    # A template's disk: its source is shared with the VMs' disks, so its deletion is refused.
    killed_at(world, "after_phase3_commit", world.disk("tpl-os"), world.domain("D"))
    res = run_cli("recover", "--workers", "2", env=world.cli_env())
    assert res.returncode == 0, res.stderr
    assert "recovered 2 move(s)" in res.stdout, res.stdout
    assert sorted(r["stage"] for r in world.rows("SELECT stage FROM move_disk_commands")) == [
        "ENDED_SUCCESS", "ENDED_WITH_LEFTOVER"]
    world.check()
    bad = run_cli("recover", "--workers", "0", env=world.cli_env())
    assert bad.returncode != 0 and "not a positive number" in bad.stderr
