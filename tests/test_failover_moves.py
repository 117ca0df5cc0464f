"""Failover in the middle of moves: a move stopped in every phase, the primary killed
(immediate shutdown), the standby promoted, recovery against the new primary through the
multi-host DSN; then invariants I1-I6 (tests/invariants.py) and the volumes' checksums.

Each move runs in its own process, killed (SIGKILL) at a named crash point of the engine,
so that the failover finds it exactly in that phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parent / "agent"))

from agenttools import AgentProcess, running_agent  # noqa: E402
from cli_runner import run_cli  # noqa: E402
REPLICATED_DB = "movedisk"  # the database replicated_cluster deploys (tests/conftest.py)
from invariants import check, volume_checksums  # noqa: E402

from movedisk import db as mdb  # noqa: E402
from movedisk import inventory  # noqa: E402
from movedisk.agent import SimControl, StorageClient  # noqa: E402
from movedisk.engine.move import Engine  # noqa: E402
from movedisk.engine.recover import recover  # noqa: E402
from movedisk.engine.store import Store  # noqa: E402

# One move per crash point: where its process dies, so where the failover finds it.
PHASES = {
    "d-phase1": "after_phase1_commit",  # TEMPORARY_CREATED, no copy asked
    "d-copy-recorded": "after_copy_recorded",  # COPYING, the copy goes on at the agent
    "d-copying": "during_copy",  # COPYING, still copying (slow) at the failover
    "d-phase3-open": "inside_phase3_before_commit",  # COPYING: phase 3 never committed
    "d-switched": "after_phase3_commit",  # SWITCHED, source deletion not started
    "d-deleted": "after_source_delete_before_rows",  # DELETING_SOURCE, S already empty
    "d-done": "",  # ENDED_SUCCESS before the failover
}

_DRIVER = """
import sys, uuid, psycopg
from psycopg.rows import dict_row
from movedisk.agent import StorageClient
from movedisk.engine.move import Engine
from movedisk.engine.store import Store
dsn, sock, disk, dest = sys.argv[1:5]
conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
eng = Engine(Store(conn), StorageClient(sock, timeout=30))
eng.run(eng.start(uuid.UUID(disk), uuid.UUID(dest)))
"""


def spec(aliases: list[str]) -> dict[str, Any]:
    return {"data_centers": [{
        "name": "dc",
        "domains": [{"name": "S", "capacity": "256M"}, {"name": "D", "capacity": "256M"}],
        "vms": [{"name": "vm1", "disks": [
            {"alias": a, "domain": "S", "size": "4M", "data": "1M", "snapshots": 1}
            for a in aliases]}],
    }]}


@pytest.fixture
def agent_proc(tmp_path: Path) -> Iterator[AgentProcess]:
    root = tmp_path / "agent"
    root.mkdir()
    with running_agent(root, "mdf-") as proc:
        yield proc


def drive(dsn: str, agent: AgentProcess, disk: str, dest: str, crash_at: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MOVEDISK_CRASH_AT": crash_at}
    if not crash_at:
        env.pop("MOVEDISK_CRASH_AT")
    return subprocess.Popen([sys.executable, "-c", _DRIVER, dsn, agent.socket, disk, dest],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stages(conn: psycopg.Connection[Any]) -> dict[str, str]:
    rows = conn.execute("SELECT image_group_id::text AS disk, stage FROM move_disk_commands").fetchall()
    return {r["disk"]: r["stage"] for r in rows}


def recover_all(dsn: str, client: StorageClient, timeout: float = 60) -> tuple[float, int]:
    """Recovery on whichever server is the primary until no move is unfinished; seconds, rounds."""
    started = time.monotonic()
    rounds = 0
    with mdb.PrimarySession(dsn) as session:
        engine = Engine(Store(session.conn), client)
        while True:
            rounds += 1
            report = recover(engine)
            assert not report.errors, report.to_json()
            if not engine.store.unfinished_moves():
                return time.monotonic() - started, rounds
            assert time.monotonic() - started < timeout, report.to_json()
            time.sleep(0.05)


def placement(conn: psycopg.Connection[Any], disk: str) -> set[str]:
    return {r["sd"] for r in conn.execute(
        "SELECT m.storage_domain_id::text AS sd FROM images i JOIN image_storage_domain_map m "
        "ON m.image_id = i.image_guid WHERE i.image_group_id = %s", (disk,)).fetchall()}


@pytest.mark.slow
def test_failover_with_moves_in_every_phase(replicated_cluster, agent_proc, record_property) -> None:
    cluster = replicated_cluster(synchronous=True)
    dsn = cluster.dsn(REPLICATED_DB)
    sim = SimControl(agent_proc.socket, timeout=30)
    client = StorageClient(agent_proc.socket, timeout=30)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        made = inventory.build(conn, sim, spec(list(PHASES)), salt=uuid.uuid4().hex)
    expected = volume_checksums(agent_proc.root)
    src, dst = made.domains["S"], made.domains["D"]
    disks = {alias: made.disks[alias]["id"] for alias in PHASES}
    # The copy that must still run at the failover: about 1 MiB at 512 KiB/s.
    sim.add_fault("copy_delay", sdUUID=dst, imgUUID=disks["d-copying"], count=0,
                  bytes_per_second=512 * 1024)

    procs = {a: drive(dsn, agent_proc, disks[a], dst, point) for a, point in PHASES.items()}
    for alias, proc in procs.items():
        if alias != "d-copying":
            proc.wait(60)
    for alias, proc in procs.items():
        if PHASES[alias] and alias != "d-copying":
            assert proc.returncode == -9, (alias, proc.returncode, proc.stderr.read())
    procs["d-done"].returncode == 0 or pytest.fail(procs["d-done"].stderr.read())
    procs["d-copying"].wait(60)
    assert procs["d-copying"].returncode == -9
    with psycopg.connect(cluster.primary.dsn(REPLICATED_DB), row_factory=dict_row) as conn:
        before = stages(conn)
    in_flight = Counter(s for s in before.values() if s not in ("ENDED_SUCCESS",))
    assert before[disks["d-copying"]] == "COPYING"
    assert client.tasks_by_tag and any(
        t.get("taskState") != "finished" for t in client.tasks_by_tag(
            str(_command_of(cluster, disks["d-copying"]))))

    promote_s = cluster.failover()
    started = time.monotonic()
    res = run_cli("recover", "--json", "--dsn", dsn, "--agent", agent_proc.socket)
    seconds, rounds = time.monotonic() - started, 1
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert len(report["finished"]) == len(in_flight_moves(before)) and not report["errors"]
    record_property("moves_in_flight_by_phase", dict(in_flight))
    record_property("promote_s", round(promote_s, 3))
    record_property("promote_to_all_finished_s", round(promote_s + seconds, 3))
    print(f"\nfailover: in flight {dict(in_flight)}; promote {promote_s:.2f}s; "
          f"recovery {seconds:.2f}s in {rounds} round(s)")

    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        after = {alias: stages(conn)[disk] for alias, disk in disks.items()}
        # No copy was asked before the crash: compensated, the disk stays on S. Every other
        # move had a copy under way or done: it rolls forward to D.
        assert after == {a: "ENDED_FAILURE" if a == "d-phase1" else "ENDED_SUCCESS"
                         for a in PHASES}, after
        for alias, disk in disks.items():
            on = src if alias == "d-phase1" else dst
            assert placement(conn, disk) == {on}, alias
            other = dst if on == src else src
            assert not (agent_proc.root / "domains" / other / "images" / disk).exists(), alias
        check(conn, agent_proc.root, expected, settled=True)


@pytest.mark.slow
def test_async_failover_that_loses_a_whole_move_is_found_by_verify(
    replicated_cluster, agent_proc, record_property
) -> None:
    """The limit of asynchronous replication: a move that started, copied, switched and
    deleted its source entirely after the standby's last received position leaves no record
    on the new primary, so recovery has nothing to finish. What must still hold: nothing is
    deleted (the only copy, on D, stays intact) and ``movedisk verify`` reports the mismatch
    (the disk mapped to S is not there, an unknown image group is on D)."""
    cluster = replicated_cluster(synchronous=False)
    dsn = cluster.dsn(REPLICATED_DB)
    sim = SimControl(agent_proc.socket, timeout=30)
    client = StorageClient(agent_proc.socket, timeout=30)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        made = inventory.build(conn, sim, spec(["vm1-data"]), salt=uuid.uuid4().hex)
    expected = volume_checksums(agent_proc.root)
    src, dst = made.domains["S"], made.domains["D"]
    disk = made.disks["vm1-data"]["id"]
    cluster.wait_replayed()
    cluster.cut_replication()
    proc = drive(dsn, agent_proc, disk, dst, "")
    assert proc.wait(60) == 0, proc.stderr.read()
    cluster.failover()
    recover_all(dsn, client)  # nothing to recover: no record survived
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        assert stages(conn) == {} and placement(conn, disk) == {src}
    assert not (agent_proc.root / "domains" / src / "images" / disk).exists()
    on_d = {v.name: v for v in (agent_proc.root / "domains" / dst / "images" / disk).glob("*")
            if not v.name.endswith(".meta")}
    assert {k: v for k, v in volume_checksums(agent_proc.root).items() if k in on_d} == {
        k: v for k, v in expected.items() if k in on_d} and on_d
    res = run_cli("verify", "--json", "--dsn", dsn, "--agent-root", str(agent_proc.root))
    assert res.returncode == 1, res.stdout + res.stderr
    findings = json.loads(res.stdout)["findings"]
    assert {f["check_name"] for f in findings} == {"volume_missing", "volume_unknown"}, findings


@pytest.mark.slow
def test_a_running_move_whose_record_the_failover_lost_stops_and_says_so(
    replicated_cluster, agent_proc
) -> None:
    """Asynchronous, the standby cut off before the move started: the running process
    reconnects to the promoted standby, finds no record of its move there and stops with
    MoveRecordLost (one line, exit 15) instead of going on from what it remembers (phase 3
    on a database that never saw phase 1 would map the disk to D behind its back)."""
    cluster = replicated_cluster(synchronous=False)
    dsn = cluster.dsn(REPLICATED_DB)
    sim = SimControl(agent_proc.socket, timeout=30)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        made = inventory.build(conn, sim, spec(["vm1-data"]), salt=uuid.uuid4().hex)
    src, dst = made.domains["S"], made.domains["D"]
    disk = made.disks["vm1-data"]["id"]
    sim.add_fault("copy_delay", sdUUID=dst, imgUUID=disk, count=0, bytes_per_second=1024 * 1024)
    cluster.wait_replayed()
    cluster.cut_replication()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MOVEDISK_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "movedisk.cli", "move", disk, "--to", dst, "--wait",
         "--dsn", dsn, "--agent", agent_proc.socket],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while cluster.primary.sql("SELECT count(*) FROM move_disk_commands WHERE stage = 'COPYING'",
                              dbname=REPLICATED_DB)[0][0] == 0:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    cluster.failover()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 15, out + err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("movedisk: MoveRecordLost: the record of move ") and \
        "after a failover" in lines[-1]
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        assert stages(conn) == {} and placement(conn, disk) == {src}
        statuses = {r["imagestatus"] for r in conn.execute(
            "SELECT imagestatus FROM images WHERE image_group_id = %s", (disk,)).fetchall()}
    assert statuses == {1}  # the disk as the new primary knows it: OK, on S
    assert (agent_proc.root / "domains" / src / "images" / disk).exists()  # S untouched


def in_flight_moves(stage_by_disk: dict[str, str]) -> list[str]:
    return [d for d, st in stage_by_disk.items() if not st.startswith("ENDED")]


@pytest.mark.slow
def test_an_old_primary_restarted_after_the_failover_cannot_finish_a_move(
    replicated_cluster, agent_proc
) -> None:
    """Split brain: the old primary comes back read-write with a move it believes is in
    flight. ``movedisk recover`` pointed at it (first in the DSN, so libpq picks it) refuses
    before changing anything, there and on the storage; against the new primary it works."""
    cluster = replicated_cluster(synchronous=True)
    dsn = cluster.dsn(REPLICATED_DB)
    sim = SimControl(agent_proc.socket, timeout=30)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        made = inventory.build(conn, sim, spec(["vm1-data"]), salt=uuid.uuid4().hex)
    src, dst = made.domains["S"], made.domains["D"]
    disk = made.disks["vm1-data"]["id"]
    proc = drive(dsn, agent_proc, disk, dst, "after_phase3_commit")
    assert proc.wait(60) == -9, proc.stderr.read()
    cluster.failover()
    old = cluster.restart_old_primary()
    files = sorted(p.name for p in (agent_proc.root / "domains").glob("*/images/*"))

    res = run_cli("recover", "--dsn", dsn, "--agent", agent_proc.socket)
    assert res.returncode == 20, res.stdout + res.stderr
    assert res.stderr.startswith("movedisk: NotPrimary: 127.0.0.1:") and "timeline 1" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    on_old = old.sql("SELECT stage FROM move_disk_commands", dbname=REPLICATED_DB)
    assert on_old == [("SWITCHED",)]  # untouched
    assert sorted(p.name for p in (agent_proc.root / "domains").glob("*/images/*")) == files
    assert (agent_proc.root / "domains" / src / "images" / disk).exists()

    new_only = cluster.primary.dsn(REPLICATED_DB)
    res = run_cli("recover", "--json", "--dsn", new_only, "--agent", agent_proc.socket)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [f["stage"] for f in json.loads(res.stdout)["finished"]] == ["ENDED_SUCCESS"]
    # Even now, the old primary is refused (the promoted server is in the DSN).
    res = run_cli("recover", "--dsn", dsn, "--agent", agent_proc.socket)
    assert res.returncode == 20
    assert old.sql("SELECT stage FROM move_disk_commands", dbname=REPLICATED_DB) == [("SWITCHED",)]


@pytest.mark.slow
def test_a_running_move_follows_the_primary_through_the_failover(
    replicated_cluster, agent_proc, record_property
) -> None:
    """``movedisk move --wait`` copying when the primary dies: the same process reconnects to
    the promoted standby (multi-host DSN, bounded backoff), reloads the move from the
    database and ends it; no recovery needed."""
    cluster = replicated_cluster(synchronous=True)
    dsn = cluster.dsn(REPLICATED_DB)
    sim = SimControl(agent_proc.socket, timeout=30)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        made = inventory.build(conn, sim, spec(["vm1-data"]), salt=uuid.uuid4().hex)
    expected = volume_checksums(agent_proc.root)
    src, dst = made.domains["S"], made.domains["D"]
    disk = made.disks["vm1-data"]["id"]
    sim.add_fault("copy_delay", sdUUID=dst, imgUUID=disk, count=0, bytes_per_second=1024 * 1024)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MOVEDISK_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "movedisk.cli", "move", disk, "--to", dst, "--wait", "--json",
         "--dsn", dsn, "--agent", agent_proc.socket],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while cluster.primary.sql("SELECT count(*) FROM move_disk_commands WHERE stage = 'COPYING'",
                              dbname=REPLICATED_DB)[0][0] == 0:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    promote_s = cluster.failover()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert json.loads(out)["stage"] == "ENDED_SUCCESS"
    record_property("running_move_promote_s", round(promote_s, 3))
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        assert conn.info.port == cluster.primary.port
        assert placement(conn, disk) == {dst}
        check(conn, agent_proc.root, expected, settled=True)
    assert not (agent_proc.root / "domains" / src / "images" / disk).exists()


def _command_of(cluster: Any, disk: str) -> uuid.UUID:
    rows = cluster.primary.sql("SELECT command_id FROM move_disk_commands WHERE image_group_id = %s",
                               disk, dbname=REPLICATED_DB)
    return rows[0][0]


@pytest.mark.slow
def test_async_failover_loses_phase3_after_the_source_was_deleted(
    replicated_cluster, agent_proc, record_property
) -> None:
    """The standby stops receiving once the copy is recorded; the move goes on on the old
    primary through phase 3 and the deletion of the source; the primary dies. The new
    primary says COPYING with the disk on S; the storage says S is empty and D complete.
    Recovery must roll forward from the storage: the disk ends on D, nothing else deleted."""
    cluster = replicated_cluster(synchronous=False)
    dsn = cluster.dsn(REPLICATED_DB)
    sim = SimControl(agent_proc.socket, timeout=30)
    client = StorageClient(agent_proc.socket, timeout=30)
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        made = inventory.build(conn, sim, spec(["vm1-data"]), salt=uuid.uuid4().hex)
    expected = volume_checksums(agent_proc.root)
    src, dst = made.domains["S"], made.domains["D"]
    disk = made.disks["vm1-data"]["id"]

    proc = drive(dsn, agent_proc, disk, dst, "after_copy_recorded")
    assert proc.wait(60) == -9, proc.stderr.read()
    cluster.wait_replayed()
    cut_at = cluster.cut_replication()
    # The move goes on (recovery of the dead process) on the old primary only.
    proc = subprocess.run(
        [sys.executable, "-c", _RECOVER_DRIVER, cluster.primary.dsn(REPLICATED_DB), agent_proc.socket],
        env={**os.environ, "MOVEDISK_CRASH_AT": "after_source_delete_before_rows"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == -9, proc.stderr
    assert not (agent_proc.root / "domains" / src / "images" / disk).exists()
    old = cluster.primary.sql(
        "SELECT stage, pg_current_wal_lsn()::text FROM move_disk_commands", dbname=REPLICATED_DB)
    assert old[0][0] == "DELETING_SOURCE"
    lost_bytes = cluster.primary.sql("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)",
                                     old[0][1], cut_at)[0][0]
    next_xid = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
    old_next = cluster.primary.sql(next_xid, dbname=REPLICATED_DB)[0][0]

    cluster.failover()
    lost_xacts = old_next - cluster.primary.sql(next_xid, dbname=REPLICATED_DB)[0][0]
    assert lost_xacts >= 2  # at least phase 3 and the recorded deletion
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        assert set(stages(conn).values()) == {"COPYING"}  # phase 3 and after: lost
        assert placement(conn, disk) == {src}  # the database still says S
    seconds, _ = recover_all(dsn, client)
    record_property("async_lost_wal_bytes", int(lost_bytes))
    record_property("async_lost_transactions", int(lost_xacts))
    print(f"\nasync failover: lost {lost_xacts} write transactions, {int(lost_bytes)} bytes "
          f"of WAL (phase 3 and the deletion record); recovered in {seconds:.2f}s")
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        assert set(stages(conn).values()) == {"ENDED_SUCCESS"}
        assert placement(conn, disk) == {dst}
        check(conn, agent_proc.root, expected, settled=True)


_RECOVER_DRIVER = """
import sys, time, psycopg
from psycopg.rows import dict_row
from movedisk.agent import StorageClient
from movedisk.engine.move import Engine
from movedisk.engine.recover import recover
from movedisk.engine.store import Store
dsn, sock = sys.argv[1:3]
conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
eng = Engine(Store(conn), StorageClient(sock, timeout=30))
for _ in range(100):
    recover(eng)
    time.sleep(0.05)
"""


def test_a_flapping_database_is_reconnected_a_bounded_number_of_times() -> None:
    """Each lost connection costs one reconnect and a reload from the database; after
    MAX_RECONNECTS the run gives up with ConnectionFailed (recovery finishes the move)."""
    import dataclasses
    from datetime import datetime, timezone

    from movedisk.engine import move as move_mod
    from movedisk.engine.store import MoveCommand
    from movedisk.errors import ConnectionFailed

    now = datetime.now(timezone.utc)
    cmd = MoveCommand(
        command_id=uuid.uuid4(), image_group_id=uuid.uuid4(), src_storage=uuid.uuid4(),
        dest_storage=uuid.uuid4(), storage_pool_id=uuid.uuid4(), temporary_disk_id=uuid.uuid4(),
        wipe_after_delete=False, stage="COPYING", copy_task_id=None, delete_task_id=None,
        lease_owner="me", lease_expires=now, last_error=None, recovered=False, created_at=now,
        updated_at=now, ended_at=None)
    loads: list[uuid.UUID] = []

    class Store:
        conn = None

        def get_move(self, command_id: uuid.UUID) -> MoveCommand:
            loads.append(command_id)
            return dataclasses.replace(cmd)

    class Agent:
        calls = 0

        def tasks_by_tag(self, tag: str) -> list[dict[str, Any]]:
            Agent.calls += 1
            if Agent.calls > 50:  # an unbounded loop fails here instead of hanging
                raise RuntimeError("reconnected without a bound")
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    reconnects: list[int] = []
    engine = move_mod.Engine(Store(), Agent(), owner="me",  # type: ignore[arg-type]
                             reconnect=lambda: reconnects.append(1))
    with pytest.raises(ConnectionFailed, match="lost the database 6 times"):
        engine.run(cmd)
    assert len(reconnects) == move_mod.MAX_RECONNECTS == len(loads)
    # Without a way to reconnect the error goes through at once.
    with pytest.raises(psycopg.OperationalError):
        move_mod.Engine(Store(), Agent(), owner="me").run(cmd)  # type: ignore[arg-type]
