"""Concurrency: engine processes (forked, each with its own database session and agent calls)
against each other. Two moves of one disk: exactly one wins, the other is DiskBusy, also with
the first transaction held open; 20 moves of different disks from 4 processes at once all
finish; two recoveries and two cleanups at once neither finish a move twice nor delete twice;
a deploy while moves run waits for the locks it needs and breaks nothing."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from worlds import build_world

from movedisk.deploy import DEPLOY_LOCK, deploy
from movedisk.engine import cleanup, crashpoints, recover
from movedisk.engine.move import Engine
from movedisk.errors import DiskBusy

FORK = multiprocessing.get_context("fork")

# 20 small plain disks on S (and a template-based pair), for the many-moves case.
MANY: dict[str, Any] = {"data_centers": [{
    "name": "dc",
    "domains": [{"name": "S", "capacity": "512M"}, {"name": "D", "capacity": "512M"},
                {"name": "E", "capacity": "512M"}],
    "templates": [{"name": "tpl", "domain": "S",
                   "disks": [{"alias": "tpl-os", "size": "1M", "data": "64K"}]}],
    "vms": [{"name": f"vm{i}", "template": "tpl", "disks": [
        {"alias": f"d{i}", "domain": "S", "size": "1M", "data": "64K", "snapshots": i % 3}]}
        for i in range(20)] + [
        {"name": "vmt", "template": "tpl", "disks": [
            {"alias": "vmt-os", "domain": "S", "template_disk": "tpl-os", "data": "32K"}]}],
}]}


def in_processes(world, n: int, work: Callable[[int, Engine], Any], tmp: Path,
                 crash_at: str | None = None, timeout: float = 60) -> list[Any]:
    """Run ``work(i, engine)`` in ``n`` forked engine processes released together; their
    results (or "error: ..." / "killed"), in order."""
    go = FORK.Event()
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                if crash_at:
                    os.environ[crashpoints.ENV] = crash_at
                eng = world.engine()
                go.wait(10)
                out = work(i, eng)
            except BaseException as exc:  # noqa: BLE001
                out = f"error: {type(exc).__name__}: {exc}"
                if not isinstance(exc, Exception) or "Traceback" in out:
                    out += traceback.format_exc()
            (tmp / f"out-{i}.json").write_text(json.dumps(out, default=str))
            os._exit(code)
        pids.append(pid)
    time.sleep(0.05)
    go.set()
    results = []
    deadline = time.monotonic() + timeout
    for i, pid in enumerate(pids):
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, f"process {i} hung"
            time.sleep(0.01)
        f = tmp / f"out-{i}.json"
        results.append(json.loads(f.read_text()) if f.exists() else "killed")
        f.unlink(missing_ok=True)
    return results


def test_two_processes_moving_one_disk_exactly_one_wins(world, tmp_path) -> None:
    disk, d = world.disk("vm1-data"), world.domain("D")

    def work(_i: int, eng: Engine) -> str:
        try:
            return eng.run(eng.start(disk, d)).stage
        except DiskBusy as exc:
            return f"DiskBusy: {exc}"

    results = in_processes(world, 2, work, tmp_path)
    assert sorted(r.split(":")[0] for r in results) == ["DiskBusy", "ENDED_SUCCESS"], results
    assert world.rows("SELECT count(*) AS n FROM move_disk_commands")[0]["n"] == 1
    world.check()


@pytest.mark.parametrize("first", ["commits", "rolls back"])
def test_a_second_move_waits_for_the_first_transaction_then_is_refused_or_proceeds(world, first) -> None:
    """Phase 1 held open in one session: the same disk's phase 1 in another waits for it, then
    is DiskBusy (the first committed) or goes ahead (it rolled back)."""
    disk, d = world.disk("vm1-data"), world.domain("D")
    a = psycopg.connect(world.dsn, row_factory=dict_row)
    a.execute("SELECT * FROM StartMoveDiskCommand(%s, %s, %s, 'a:1:1', 30, NULL)",
              (uuid.uuid4(), disk, d)).fetchall()  # not committed: the first transaction is open
    outcome: dict[str, Any] = {}

    def second() -> None:
        with psycopg.connect(world.dsn, autocommit=True, row_factory=dict_row) as b:
            outcome["pid"] = b.info.backend_pid
            try:
                outcome["row"] = b.execute(
                    "SELECT * FROM StartMoveDiskCommand(%s, %s, %s, 'b:1:1', 30, NULL)",
                    (uuid.uuid4(), disk, d)).fetchone()
            except psycopg.Error as exc:
                outcome["sqlstate"] = exc.sqlstate

    t = threading.Thread(target=second)
    t.start()
    deadline = time.monotonic() + 10
    waiting = False
    while time.monotonic() < deadline and not waiting:
        time.sleep(0.02)
        if "pid" in outcome:
            waiting = bool(world.rows("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND "
                                      "wait_event_type = 'Lock'", (outcome["pid"],)))
    assert waiting, "the second phase 1 did not wait for the first"
    assert t.is_alive()
    if first == "commits":
        a.commit()
    else:
        a.rollback()
    t.join(10)
    a.close()
    if first == "commits":
        assert outcome.get("sqlstate") == "MD003", outcome
        assert world.rows("SELECT count(*) AS n FROM move_disk_commands")[0]["n"] == 1
    else:
        assert outcome.get("row", {}).get("stage") == "TEMPORARY_CREATED", outcome
    eng = world.engine()
    for cmd in eng.store.unfinished_moves():
        eng.store.claim_move(cmd.command_id, eng.owner, 30, cmd.lease_owner)
        assert eng.run(eng.store.get_move(cmd.command_id)).stage == "ENDED_SUCCESS"
    world.check()


@pytest.fixture
def many(new_db, agent_proc):
    w = build_world(new_db(), agent_proc, MANY, salt=uuid.uuid4().hex, storage=True)
    try:
        yield w
    finally:
        w.sim.clear_faults()
        w.conn.close()


def test_twenty_moves_of_different_disks_from_four_processes_all_finish(many, tmp_path) -> None:
    disks = [many.disk(f"d{i}") for i in range(20)]
    d = many.domain("D")

    def work(i: int, eng: Engine) -> list[str]:
        return [eng.run(eng.start(disk, d)).stage for disk in disks[i::4]]

    results = in_processes(many, 4, work, tmp_path)
    assert results == [["ENDED_SUCCESS"] * 5] * 4, results
    assert {r["storage_domain_id"] for r in many.rows(
        "SELECT m.storage_domain_id FROM images i JOIN image_storage_domain_map m "
        "ON m.image_id = i.image_guid WHERE i.image_group_id = ANY(%s)", (disks,))} == {d}
    many.check()


def test_two_recoveries_and_two_cleanups_at_once_neither_double_finish_nor_double_delete(many, tmp_path) -> None:
    d, dd = many.domain("D"), str(many.domain("D"))
    # Eight moves killed mid-way (phase 1 only, mid-copy, after phase 3, mid-deletion: points
    # every move passes, whatever its timing), and two
    # failed copies whose partial copies' deletion failed (pending for cleanup).
    points = ["after_phase1_commit", "after_copy_recorded", "after_copy_before_phase3",
              "after_phase3_commit", "after_source_delete_accepted", "after_source_delete_before_rows",
              "inside_phase3_before_commit", "after_copy_accepted"]
    for i, point in enumerate(points):
        disk = many.disk(f"d{i}")
        res = in_processes(many, 1, lambda _i, eng, disk=disk: eng.run(eng.start(disk, d)).stage,
                           tmp_path, crash_at=point)
        assert res == ["killed"], (point, res)
    for i in (10, 11):
        many.sim.add_fault("copy_fail_after", imgUUID=str(many.disk(f"d{i}")), bytes=10_000)
        many.sim.add_fault("delete_fail", sdUUID=dd, imgUUID=str(many.disk(f"d{i}")))
        eng = many.engine()
        assert eng.run(eng.start(many.disk(f"d{i}"), d)).stage == "ENDED_FAILURE"
    unfinished = {str(c["command_id"]) for c in many.rows(
        "SELECT command_id FROM move_disk_commands WHERE ended_at IS NULL")}
    assert len(unfinished) >= 7

    def recovering(_i: int, eng: Engine) -> list[str]:
        return [str(c.command_id) for c in recover.recover(eng).finished]

    finished = in_processes(many, 2, recovering, tmp_path)
    assert all(isinstance(f, list) for f in finished), finished
    assert not set(finished[0]) & set(finished[1]), "a move was finished twice"
    assert set(finished[0]) | set(finished[1]) == unfinished
    assert many.rows("SELECT count(*) AS n FROM move_disk_commands WHERE ended_at IS NULL")[0]["n"] == 0
    pending = many.rows("SELECT image_group_id, storage_domain_id FROM image_groups_to_be_deleted")
    assert len(pending) >= 2

    def cleaning(_i: int, eng: Engine) -> dict[str, list[str]]:
        report = cleanup.run(eng, due_only=False)
        return {"done": [str(o.deletion.image_group_id) for o in report.done],
                "failed": [f"{o.deletion.image_group_id}: {o.error}" for o in report.failed]}

    reports = in_processes(many, 2, cleaning, tmp_path)
    assert all(isinstance(r, dict) and not r["failed"] for r in reports), reports
    deleted = [r["done"] for r in reports]
    assert not set(deleted[0]) & set(deleted[1]), "an image group was deleted twice"
    assert set(deleted[0]) | set(deleted[1]) == {str(p["image_group_id"]) for p in pending}
    # Every move ended once (one end event each) and was taken over once (one recovery event
    # per recovered move).
    recovered = "SYSTEM_MOVED_DISK_RECOVERED"
    ends = Counter((r["correlation_id"], r["log_type_name"]) for r in many.rows(
        "SELECT correlation_id, log_type_name FROM audit_log WHERE log_type_name = ANY(%s)",
        ([recovered, "USER_MOVED_DISK_FINISHED_SUCCESS", "USER_MOVED_DISK_FINISHED_FAILURE",
          "USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS"],)))
    assert ends and all(n == 1 for n in ends.values()), ends
    per_move = Counter(c for c, t in ends if t != recovered)
    assert all(n == 1 for n in per_move.values()) and len(per_move) == 10, per_move
    assert {c for c, t in ends if t == recovered} == unfinished
    # Nothing is left to delete, and a second cleanup finds nothing.
    assert many.rows("SELECT count(*) AS n FROM image_groups_to_be_deleted")[0]["n"] == 0
    many.check()


def test_deploy_while_moves_run_waits_for_its_lock_and_breaks_nothing(many, tmp_path) -> None:
    """Four moves copying, one move's phase 1 held open, another deploy in progress (its
    advisory lock held): deploy waits for that lock, then re-creates every function and view
    under the running moves; all of them end with success."""
    d = many.domain("D")
    for i in range(4):
        many.sim.add_fault("copy_delay", imgUUID=str(many.disk(f"d{i}")), bytes_per_second=256 << 10)
    a = psycopg.connect(many.dsn, row_factory=dict_row)
    a.execute("SELECT * FROM StartMoveDiskCommand(%s, %s, %s, 'a:1:1', 30, NULL)",
              (uuid.uuid4(), many.disk("d19"), d)).fetchall()  # phase 1, not committed
    other = psycopg.connect(many.dsn)
    other.execute("SELECT pg_advisory_xact_lock(%s)", (DEPLOY_LOCK,))  # a deploy in progress
    deployed: dict[str, Any] = {}

    def deploying() -> None:
        with psycopg.connect(many.dsn, row_factory=dict_row) as conn:
            deployed["pid"] = conn.info.backend_pid
            try:
                deployed["report"] = deploy(conn)
            except Exception as exc:  # noqa: BLE001
                deployed["error"] = exc

    def moving(i: int, eng: Engine) -> str:
        return eng.run(eng.start(many.disk(f"d{i}"), d)).stage

    results: list[Any] = []
    movers = threading.Thread(target=lambda: results.extend(in_processes(many, 4, moving, tmp_path)))
    movers.start()
    time.sleep(0.2)  # the moves are copying
    t = threading.Thread(target=deploying)
    t.start()
    deadline = time.monotonic() + 10
    waiting = []
    while time.monotonic() < deadline and not waiting:
        time.sleep(0.02)
        if "pid" in deployed:
            waiting = many.rows("SELECT wait_event FROM pg_stat_activity WHERE pid = %s AND "
                                "wait_event_type = 'Lock'", (deployed["pid"],))
    assert [w["wait_event"] for w in waiting] == ["advisory"], "deploy did not wait for the lock"
    assert t.is_alive()
    while movers.is_alive() and not many.rows(
            "SELECT 1 FROM move_disk_commands WHERE stage = 'COPYING'"):
        time.sleep(0.01)
    other.rollback()  # the other deploy ends: this one runs, under the copying moves
    other.close()
    t.join(30)
    assert "error" not in deployed, deployed.get("error")
    a.commit()  # the phase 1 begun before the deploy commits after it
    a.close()
    movers.join(60)
    assert results == ["ENDED_SUCCESS"] * 4, results
    eng = many.engine()
    cmd = eng.store.unfinished_moves()[0]
    eng.store.claim_move(cmd.command_id, eng.owner, 30, cmd.lease_owner)
    assert eng.run(eng.store.get_move(cmd.command_id)).stage == "ENDED_SUCCESS"
    many.check()
