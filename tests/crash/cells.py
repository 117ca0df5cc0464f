"""One cell of the crash matrix: a crash point crossed with a fault, on a real disk chain with
real bytes.

A forked child (a whole engine process: its own database connection, the agent over its
socket) runs the cell's work (a move, a removal, a recovery) with a hook in the engine's crash
points (``movedisk.engine.crashpoints``: the same switch MOVEDISK_CRASH_AT drives). At the
cell's point the fault strikes:

- engine_killed: the process SIGKILLs itself;
- agent_killed: the agent process is SIGKILLed; the engine goes on (and fails) as it would;
- db_crash: the database is shut down immediately (SIGQUIT to the postmaster), the engine goes on;
- conn_dropped: the engine's database session is terminated, the engine goes on;
- task_fails, deletion_blocked, dest_delete_fails, copy_corrupted: a storage condition that holds
  from the start (the copy or the deletion task at hand fails; the disk is a template's that
  other disks depend on; the partial copy's deletion on the destination fails; a byte of the
  finished copy on the destination is flipped before the engine switches to it), and the engine
  is killed at the point.

Then what died is restarted (agent, database), recovery and cleanup run in this process, and
every invariant of DESIGN.md is checked (tests/invariants.py, checksums of every volume)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from worlds import World

from movedisk.agent import StorageClient, datacopy
from movedisk.engine import cleanup, crashpoints, recover, remove, store
from movedisk.engine.move import Engine

FAULTS = ["engine_killed", "agent_killed", "task_fails", "deletion_blocked", "dest_delete_fails",
          "db_crash", "conn_dropped", "copy_corrupted"]

# The points of a move, in the order it meets them; then those of the other scenarios.
MOVE = ["before_phase1", "inside_phase1_before_commit", "after_phase1_commit",
        "after_copy_accepted", "after_copy_recorded", "during_copy", "after_copy_before_phase3",
        "inside_phase3_before_commit", "after_phase3_commit", "after_source_delete_accepted",
        "during_source_delete", "after_source_delete_before_rows",
        "inside_end_success_before_commit"]
COPY_STAGE = MOVE[:MOVE.index("after_phase3_commit")]
LEFTOVER = ["inside_end_leftover_before_commit"]  # a template's disk: its deletion is refused
FAILURE = ["inside_end_failure_before_commit", "after_end_failure_commit"]  # the copy fails
REMOVAL = ["removal_after_agent_delete", "inside_cleanup"]  # removing an ILLEGAL leftover
RECOVERY = ["inside_recover"]  # recovering a move whose process died mid-copy
POINTS = MOVE + LEFTOVER + FAILURE + REMOVAL + RECOVERY
assert sorted(POINTS) == sorted(crashpoints.POINTS), "a crash point is missing from the matrix"

# The representative slice run by `make test` (the whole matrix: `make crashtest`): every fault
# once, at a point where a wrong decision would lose a disk, and every scenario.
SLICE = [
    ("after_phase3_commit", "engine_killed"), ("during_source_delete", "agent_killed"),
    ("after_copy_recorded", "task_fails"), ("inside_end_leftover_before_commit", "deletion_blocked"),
    ("after_end_failure_commit", "dest_delete_fails"), ("inside_phase3_before_commit", "db_crash"),
    ("after_source_delete_before_rows", "conn_dropped"), ("after_copy_before_phase3", "copy_corrupted"),
    ("removal_after_agent_delete", "engine_killed"), ("inside_recover", "db_crash"),
]

CHILD_TIMEOUT = 60.0

# Cells that fail on today's code, each for a defect named in the report (pytest marks them
# xfail, strict: the day the defect is fixed they pass and the mark must go). None today: the
# corrupted-copy cells (a byte changed on D after the agent verified its copy) pass since the
# engine re-reads D's data (Image.verify) before phase 3 and before it deletes the source.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


@dataclass
class Cell:
    point: str
    fault: str

    @property
    def scenario(self) -> str:
        for name, pts in (("move", MOVE), ("leftover", LEFTOVER), ("failure", FAILURE),
                          ("removal", REMOVAL), ("recovery", RECOVERY)):
            if self.point in pts:
                return name
        raise AssertionError(self.point)


# --- helpers ---------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _kill_and_wait(pid: int, sig: int) -> None:
    os.kill(pid, sig)
    deadline = time.monotonic() + 30
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.01)


def _command(dsn: str, disk: uuid.UUID) -> dict[str, Any] | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT command_id, stage FROM move_disk_commands "
                           "WHERE image_group_id = %s ORDER BY created_at DESC LIMIT 1",
                           (disk,)).fetchone()
    return {"command_id": row[0], "stage": row[1]} if row else None


def corrupt_copy(w: World, dsn: str, disk: uuid.UUID, marks: Path, wait: bool) -> None:
    """Flip a byte of the destination's finished copy of ``disk``, once, while the database has
    not switched to it (phase 3 not committed)."""
    if (marks / "flipped").exists():
        return
    cmd = _command(dsn, disk)
    if cmd is None or cmd["stage"] not in ("TEMPORARY_CREATED", "COPYING"):
        return
    client = StorageClient(w.agent.socket, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        copies = [t for t in client.tasks_by_tag(str(cmd["command_id"])) if t.get("verb") == "Image.move"]
        if copies and copies[-1].get("taskState") == "finished":
            break
        if not wait or not copies or time.monotonic() > deadline:
            return
        time.sleep(0.01)
    if copies[-1].get("taskResult") != "success":
        return
    sd = _dest_of(dsn, cmd["command_id"])
    img_dir = w.root / "domains" / sd / "images" / str(disk)
    vols = sorted(p for p in img_dir.iterdir() if not p.name.endswith(".meta")
                  and p.stat().st_nlink == 1)  # the disk's own volumes, not a template's
    flip(vols[0])
    (marks / "flipped").write_text(str(vols[0]))


def flip(path: Path) -> None:
    """Corrupt the data of one volume: a qcow2 layer gets a sector of other bytes (qemu-io,
    so that its layer checksum changes as a flipped bit would), a raw file a flipped byte."""
    before = datacopy.checksum(str(path))
    with open(path, "rb") as f:
        qcow2 = f.read(4) == b"QFI\xfb"
    if qcow2:
        for pattern in ("0x5a", "0xa5"):
            subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {pattern} 0 512", str(path)],
                           check=True, capture_output=True, cwd=path.parent)
            if datacopy.checksum(str(path)) != before:
                return
    else:
        with open(path, "r+b") as f:
            b = f.read(1)
            f.seek(0)
            f.write(bytes([b[0] ^ 0xFF]))
    assert datacopy.checksum(str(path)) != before, f"could not corrupt {path}"


def _dest_of(dsn: str, command_id: Any) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return str(conn.execute("SELECT dest_storage FROM move_disk_commands WHERE command_id = %s",
                                (command_id,)).fetchone()[0])


# --- the cell --------------------------------------------------------------------------------


class Run:
    def __init__(self, cell: Cell, w: World, ctx: Any, marks: Path) -> None:
        self.cell, self.w, self.ctx, self.marks = cell, w, ctx, marks
        self.s, self.d = w.domain("S"), w.domain("D")
        blocked = cell.fault == "deletion_blocked"
        self.alias = "tpl-os" if cell.scenario == "leftover" or (
            blocked and cell.scenario in ("move", "failure", "recovery")) else "vm1-data"
        self.disk = w.disk(self.alias)
        self.temporary: uuid.UUID | None = None

    # The scenario's own past (a leftover to remove, a move that died mid-copy), then the
    # storage conditions, in force from then on (each strikes the next matching task once).
    def arrange(self) -> None:
        c, sim, s, d = self.cell, self.w.sim, str(self.s), str(self.d)
        if c.scenario == "removal":
            eng = self.w.engine()
            self.temporary = eng.run(eng.start(self.w.disk("tpl-os"), self.d)).temporary_disk_id
            if c.fault != "deletion_blocked":
                for alias in ("vm1-os", "vm2-os"):
                    eng.run(eng.start(self.w.disk(alias), self.d))
            eng.store.conn.close()
        if c.scenario == "recovery":
            # A move whose process died mid-copy: recovery is the cell's work.
            self.w.sim.add_fault("copy_delay", imgUUID=str(self.disk), bytes_per_second=16 << 20)
            code, _ = self.child("during_copy", "engine_killed", self.move)
            assert code == -signal.SIGKILL, code
        if c.scenario == "failure" or c.fault == "dest_delete_fails":
            sim.add_fault("copy_fail_after", sdUUID=d, bytes=200_000)
        if c.fault == "dest_delete_fails":
            sim.add_fault("delete_fail", sdUUID=d)
        if c.fault == "task_fails":
            if c.scenario == "failure":
                sim.add_fault("delete_fail", sdUUID=d)  # the partial copy's deletion
            elif c.scenario == "move" and c.point in COPY_STAGE:
                sim.add_fault("copy_fail_after", sdUUID=d, bytes=200_000)
            else:
                sim.add_fault("delete_fail", sdUUID=s)  # the source deletion, the removal

    def move(self, eng: Engine) -> None:
        eng.run(eng.start(self.disk, self.d))

    def work(self, eng: Engine) -> None:
        if self.cell.scenario == "removal":
            assert self.temporary is not None
            remove.remove(eng, self.temporary)
        elif self.cell.scenario == "recovery":
            recover.recover(eng)
        else:
            self.move(eng)

    def child(self, point: str, fault: str, work: Callable[[Engine], None]) -> tuple[int, bool]:
        """Run ``work`` in a forked engine process with the fault at ``point``: its exit
        (negative: the signal that killed it) and whether it reached the point."""
        reached = self.marks / f"reached-{point}-{fault}"
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 0
            try:
                self._child(point, fault, work, reached)
            except BaseException:  # noqa: BLE001 - any failure of the engine process
                code = 3
            os._exit(code)
        deadline = time.monotonic() + CHILD_TIMEOUT
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise AssertionError(f"the engine process hung at {point} x {fault}")
            time.sleep(0.01)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return code, reached.exists()

    def _child(self, point: str, fault: str, work: Callable[[Engine], None], reached: Path) -> None:
        eng = self.w.engine()
        backend = eng.store.conn.info.backend_pid
        dsn = self.w.dsn

        def hook(name: str) -> bool:
            if fault == "copy_corrupted":
                corrupt_copy(self.w, dsn, self.disk, self.marks, wait=name == "during_copy")
            if name != point or reached.exists():
                return False
            reached.write_text(name)
            if fault == "agent_killed":
                _kill_and_wait(self.w.agent.pid, signal.SIGKILL)
                return False
            if fault == "db_crash":
                _kill_and_wait(self.ctx.postmaster_pid, signal.SIGQUIT)
                return False
            if fault == "conn_dropped":
                with psycopg.connect(dsn, autocommit=True) as other:
                    other.execute("SELECT pg_terminate_backend(%s)", (backend,))
                return False
            return True  # the engine dies here

        crashpoints.armed = hook
        store.armed = lambda name: name == point  # type: ignore[attr-defined]
        work(eng)

    def restart(self) -> None:
        """Restart what died."""
        if self.w.agent.proc is not None and self.w.agent.proc.poll() is not None:
            self.w.agent.proc = None
        if self.w.agent.proc is None:
            self.w.agent.start()
        if not self.ctx.alive():
            self.ctx.restart_after_crash()
            self.w.conn = psycopg.connect(self.w.dsn, autocommit=True,
                                          row_factory=psycopg.rows.dict_row)

    def settle(self) -> list[str]:
        """Recovery, then cleanup, from a new engine process' point of view; the problems."""
        problems = []
        eng = self.w.engine()
        try:
            report = recover.recover(eng)
            problems += [f"recovery: {c.command_id}: {e}" for c, e in report.errors]
            # A fault strikes once: a deletion it failed is retried by the next cleanup. One
            # blocked by dependents (the template's disk) stays recorded: the ILLEGAL temporary
            # disk is its record.
            for _ in range(2):
                out = cleanup.run(eng, due_only=False)
            if self.cell.fault != "deletion_blocked" and self.alias != "tpl-os":
                problems += [f"cleanup: {o.deletion.image_group_id}: {o.error}" for o in out.failed]
                problems += [f"deletion still pending: {r['image_group_id']} on {r['storage_domain_id']}"
                             for r in self.w.rows("SELECT * FROM image_groups_to_be_deleted")]
        finally:
            eng.store.conn.close()
        return problems


def run_cell(cell: Cell, w: World, ctx: Any, marks: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    result: dict[str, Any] = {"point": cell.point, "fault": cell.fault, "reached": False,
                              "ok": False, "error": "", "exit": None, "stages": []}
    r = Run(cell, w, ctx, marks)
    try:
        r.arrange()
        code, reached = r.child(cell.point, cell.fault, r.work)
        result["exit"], result["reached"] = code, reached
        if cell.fault in ("engine_killed", "task_fails", "deletion_blocked", "dest_delete_fails",
                          "copy_corrupted") and reached:
            assert code == -signal.SIGKILL, f"the engine was not killed at {cell.point}: exit {code}"
        r.restart()
        if cell.fault == "copy_corrupted":
            corrupt_copy(w, w.dsn, r.disk, marks, wait=True)
        problems = r.settle()
        result["stages"] = [x["stage"] for x in w.rows(
            "SELECT stage FROM move_disk_commands ORDER BY created_at")]
        try:
            w.check()
        except AssertionError as exc:
            problems.append(str(exc))
        if cell.scenario == "removal" and cell.fault != "deletion_blocked":
            left = w.rows("SELECT count(*) AS n FROM images WHERE image_group_id = %s",
                          (r.temporary,))[0]["n"]
            if left:
                problems.append(f"the removed temporary disk {r.temporary} still has {left} images")
        result["ok"] = not problems
        result["error"] = "\n".join(problems)
    except Exception as exc:  # noqa: BLE001 - a cell that breaks is a failed cell
        result["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    finally:
        try:
            r.restart()
        except Exception:  # noqa: BLE001
            pass
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result
