"""Recovery after a crash with many moves in flight, against as many normal ends.

N moves are staged through the real engine code path (Engine.start / Engine.run, the instant
in-process agent of bench/move_throughput.py) and stopped at a crash point each, spread
round-robin over the crash points between the engine's steps (phase 1 committed, copy
accepted, copy recorded, copy done, phase 3 committed, source deletion accepted, source
deletion done, its rows not removed): half of them by a process
that is then gone (its owner id names no live process: a crash), half by this process. Timed,
in turns: ``recover()`` (the code ``movedisk recover`` runs) over the crashed half, against
this process finishing its own half from the same stages (``Engine.run``, the normal end).
Goal: recovery at most 2x the normal ends, and linear in N (time per move at the largest N
against the smallest). Prints one JSON object on its last line.
Environment: BENCH_RECOVERY_SIZES (default 1000,3000).
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from common import emit, figure, log  # noqa: E402
from move_throughput import InstantAgent  # noqa: E402

from movedisk import inventory  # noqa: E402
from movedisk.deploy import deploy  # noqa: E402
from movedisk.engine import cleanup, end, move, recover, remove, store  # noqa: E402
from movedisk.engine.move import Engine  # noqa: E402
from movedisk.engine.recover import recover as run_recovery  # noqa: E402
from movedisk.engine.store import Store  # noqa: E402
from movedisk.pgserver import ThrowawayCluster  # noqa: E402

SIZES = [int(x) for x in os.environ.get("BENCH_RECOVERY_SIZES", "1000,3000").split(",")]
# Where a move is stopped, round-robin; None: right after phase 1 (Engine.start only).
POINTS = [None, "after_copy_accepted", "after_copy_recorded", "after_copy_before_phase3",
          "after_phase3_commit", "after_source_delete_accepted",
          "after_source_delete_before_rows"]
LEASE = 3600  # the staged leases must not expire while the other half is staged and timed
GOAL = 2.0


class IndexedAgent(InstantAgent):
    """The instant agent with its tasks found by tag through an index (InstantAgent scans all
    of them: with thousands of moves staged, that scan, not the engine, would be timed)."""

    def __init__(self, volumes: dict[str, list[str]], src: str) -> None:
        super().__init__(volumes, src)
        self.by_tag: dict[str, dict[str, dict]] = {}

    def _task(self, verb: str, tag: str | None) -> str:
        tid = super()._task(verb, tag)
        self.by_tag.setdefault(str(tag), {})[tid] = self.tasks[tid]
        return tid

    def tasks_by_tag(self, tag: str) -> list[dict]:
        InstantAgent.calls += 1
        return [t for t in self.by_tag.get(tag, {}).values() if t["taskID"] in self.tasks]

    def clear_task(self, tid: str) -> bool:
        task = self.tasks.get(tid)
        if task is not None:
            self.by_tag.get(str(task["tag"]), {}).pop(tid, None)
        return super().clear_task(tid)


class Crash(BaseException):
    """Stands for SIGKILL at a crash point: nothing after it runs (no handler catches it)."""


_target: list[str | None] = [None]


def _crash_point(name: str) -> None:
    if name == _target[0]:
        raise Crash(name)


for _mod in (move, end, remove, cleanup, recover, store):
    if hasattr(_mod, "crash_point"):
        _mod.crash_point = _crash_point  # type: ignore[attr-defined]


def spec(n: int, tag: str) -> dict[str, Any]:
    return {"data_centers": [{
        "name": f"dc-{tag}",
        "domains": [{"name": f"S-{tag}", "capacity": "2T"}, {"name": f"D-{tag}", "capacity": "2T"}],
        "vms": [{"name": f"vm-{tag}-{v}", "disks": [
            {"alias": f"d{v}-{i}-{tag}", "domain": f"S-{tag}", "size": "64K", "data": "4K"}
            for i in range(min(100, n - v * 100))]} for v in range((n + 99) // 100)],
    }]}


def stage(eng: Engine, disks: list[str], dest: str) -> dict[str, int]:
    """Start each move and run it to its crash point; the stages the moves are left in."""
    stages: dict[str, int] = {}
    for i, d in enumerate(disks):
        point = POINTS[i % len(POINTS)]
        cmd = eng.start(uuid.UUID(d), uuid.UUID(dest))
        if point is not None:
            _target[0] = point
            try:
                cmd = eng.run(cmd)
            except Crash:
                cmd = eng.store.get_move(cmd.command_id)
            finally:
                _target[0] = None
        stages[cmd.stage] = stages.get(cmd.stage, 0) + 1
    return stages


def one_size(dsn: str, n: int, first: str) -> dict[str, Any]:
    tag = f"r{n}"
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        made = inventory.build(conn, None, spec(2 * n, tag), salt=tag)
    disks = [d["id"] for d in made.disks.values()]
    volumes = {d["id"]: d["volumes"] for d in made.disks.values()}
    src, dest = made.domains[f"S-{tag}"], made.domains[f"D-{tag}"]
    agent = IndexedAgent(volumes, src)
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    live = Engine(Store(conn), agent, lease_seconds=LEASE, poll_seconds=0.0005,
                  max_poll_seconds=0.002)  # type: ignore[arg-type]
    gone = Engine(Store(conn), agent, owner=f"{socket.gethostname()}:999999999:gone-{tag}",
                  lease_seconds=LEASE, poll_seconds=0.0005, max_poll_seconds=0.002)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    crashed = stage(gone, disks[0::2], dest)
    own = stage(live, disks[1::2], dest)
    log(f"  {n}: staged {2 * n} moves in {time.perf_counter() - t0:.1f} s: {crashed}")
    in_flight = sum(v for k, v in crashed.items() if not k.startswith("ENDED"))
    assert in_flight == n, crashed  # every crash point leaves its move unfinished

    times: dict[str, float] = {}

    def do_recover() -> None:
        t = time.perf_counter()
        report = run_recovery(live)
        times["recover"] = time.perf_counter() - t
        assert not report.errors, report.errors[:3]
        times["recovered"] = len(report.finished)

    def do_normal() -> None:
        mine = [c for c in live.store.unfinished_moves() if c.lease_owner == live.owner]
        t = time.perf_counter()
        by_stage: dict[str, list[float]] = {}
        for c in mine:
            t1 = time.perf_counter()
            live.run(c)
            by_stage.setdefault(c.stage, []).append(time.perf_counter() - t1)
        times["normal"] = time.perf_counter() - t
        log("  normal ms by stage: " + ", ".join(
            f"{k} {statistics.median(v) * 1000:.1f}" for k, v in by_stage.items()))
        times["normal_moves"] = len(mine)

    for step in ((do_recover, do_normal) if first == "recover" else (do_normal, do_recover)):
        step()
    left = live.store.unfinished_moves()
    assert not left, f"{len(left)} moves still unfinished"
    conn.close()
    log(f"  {n}: recovery {times['recover']:.2f} s for {times['recovered']} moves, normal ends "
        f"{times['normal']:.2f} s for {times['normal_moves']} (x{times['recover'] / times['normal']:.2f})")
    return {"n": n, "in_flight": in_flight, "stages": crashed, "stages_own": own, **times}


def main() -> None:
    cluster = ThrowawayCluster()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as a:
            a.execute("CREATE DATABASE bench")
        dsn = cluster.dsn("bench")
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            deploy(conn)
        runs = [one_size(dsn, n, "recover" if i % 2 == 0 else "normal")
                for i, n in enumerate(SIZES)]
    finally:
        cluster.stop()
    figures = []
    for r in runs:
        figures.append(figure(
            f"recovery of {r['recovered']} moves in flight", r["recover"], "s", r["normal"],
            baseline_what=f"the same number of moves ({r['normal_moves']}) ended normally by "
                          "their own process from the same stages",
            goal=("<=", GOAL), rounds=1, group="recovery",
            note="one process; moves staged through the engine with an instant agent, "
                 "spread over every stage; recover() against Engine.run of the other half",
            extra={"moves": r["n"], "recovered": r["recovered"], "stages": r["stages"],
                   "per_move_ms": round(r["recover"] / r["recovered"] * 1000, 3),
                   "normal_per_move_ms": round(r["normal"] / r["normal_moves"] * 1000, 3)}))
    small, big = runs[0], runs[-1]
    if big is not small:
        per_small = small["recover"] / small["recovered"]
        per_big = big["recover"] / big["recovered"]
        figures.append(figure(
            f"recovery linearity: time per move at {big['n']} against {small['n']}",
            per_big * 1000, "ms/move", per_small * 1000,
            baseline_what=f"recovery's time per move at {small['n']} moves in flight",
            goal=("<=", 1.25), rounds=1, group="recovery",
            extra={"sizes": [r["n"] for r in runs],
                   "recover_s": [round(r["recover"], 3) for r in runs],
                   "normal_s": [round(r["normal"], 3) for r in runs]}))
    emit("recovery", figures, series={"sizes": [r["n"] for r in runs],
                                      "recover_s": [round(r["recover"], 3) for r in runs],
                                      "normal_s": [round(r["normal"], 3) for r in runs],
                                      "median_ratio": round(statistics.median(
                                          r["recover"] / r["normal"] for r in runs), 3)})


if __name__ == "__main__":
    main()
