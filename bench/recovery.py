"""Recovery after a crash with many moves in flight, against as many normal ends.

N moves are left in flight by a process that is then gone (its owner id names no live process:
a crash), spread round-robin over the crash points between the engine's steps (phase 1
committed, copy accepted, copy recorded, copy done, phase 3 committed, source deletion
accepted, source deletion done, its rows not removed); N more are left at the same points by
this process. Timed, in turns: ``recover()`` (the code ``movedisk recover`` runs) over the
crashed half, against this process finishing its own half from the same stages
(``Engine.run``, the normal end). Goal: recovery at most 2x the normal ends, and linear in N
(time per move at the largest N against the smallest).

Staging is bulk and honest: each crash point's stored state is made by the real phase
functions (StartMoveDiskCommand, RecordMoveDiskCopyTask, SwitchMoveDiskCommand,
RecordMoveDiskDeleteTask), a server-side loop of one statement per phase for all the moves at
that point, and its storage state (the copy on D, the tagged copy and deletion tasks, the
source gone) written directly into the in-process agent. A sample of moves per point is staged
the slow way too, by the engine itself stopped at the crash point (Engine.start/run), and
every one is compared with bulk-staged moves of its point (:func:`snapshot`): a difference
stops the benchmark. tests/engine/test_bench_staging.py compares the same staging with a move
SIGKILLed at each point against the real agent.

Prints one JSON object on its last line. Environment: BENCH_RECOVERY_SIZES (default
1000,10000).
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from common import emit, figure, log  # noqa: E402

from movedisk import inventory  # noqa: E402
from movedisk.agent import errors as agent_errors  # noqa: E402
from movedisk.deploy import deploy  # noqa: E402
from movedisk.engine import cleanup, end, move, recover, remove, store  # noqa: E402
from movedisk.engine.move import Engine  # noqa: E402
from movedisk.engine.recover import recover as run_recovery  # noqa: E402
from movedisk.engine.store import Store  # noqa: E402
from movedisk.pgserver import ThrowawayCluster  # noqa: E402

SIZES = [int(x) for x in os.environ.get("BENCH_RECOVERY_SIZES", "1000,10000").split(",")]
# Rounds at the smallest size (the largest is measured once: staging and ending 2x10k moves is
# most of the benchmark's time). The rounds' order: small, large, then the other small ones.
SMALL_ROUNDS = int(os.environ.get("BENCH_RECOVERY_SMALL_ROUNDS", 3))
WORKERS = int(os.environ.get("BENCH_RECOVERY_WORKERS", 1))  # recover()'s worker threads
# One more round at the smallest size with this many workers (recover --workers), its own figure.
MORE_WORKERS = int(os.environ.get("BENCH_RECOVERY_MORE_WORKERS", 2))
# Where a move is stopped, round-robin (the instant agent's tasks never run: during_copy and
# during_source_delete are not reached).
POINTS = ["after_phase1_commit", "after_copy_accepted", "after_copy_recorded",
          "after_copy_before_phase3", "after_phase3_commit", "after_source_delete_accepted",
          "after_source_delete_before_rows"]
# What a move stopped at each point has done: the phase functions that committed, and what the
# agent did (a copy: the tagged copy task, finished, and the image group on D; a deletion: the
# copy task cleared, the tagged deletion task, finished, the image group gone from S).
PLAN: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "after_phase1_commit": (("start",), ()),
    "after_copy_accepted": (("start",), ("copy",)),
    "after_copy_recorded": (("start", "record_copy"), ("copy",)),
    "after_copy_before_phase3": (("start", "record_copy"), ("copy",)),
    "after_phase3_commit": (("start", "record_copy", "switch"), ("copy",)),
    "after_source_delete_accepted": (("start", "record_copy", "switch"), ("copy", "delete")),
    "after_source_delete_before_rows": (("start", "record_copy", "switch", "record_delete"),
                                        ("copy", "delete")),
}
SAMPLE = 2  # moves per point staged by the engine itself, per half, at the first size
LEASE = 3600  # the staged leases must not expire while the other half is staged and timed
GOAL = 2.0


class BenchAgent:
    """The StorageClient verbs the engine uses, answered at once from memory: a copy or a
    deletion is finished when asked (what the engine and the database cost, alone); tasks are
    found by tag through an index. The simulated domains are ``where``: (domain, image group)
    -> its volumes."""

    def __init__(self, volumes: dict[str, list[str]], src: str) -> None:
        self.where: dict[tuple[str, str], list[str]] = {(src, img): v for img, v in volumes.items()}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.by_tag: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls: Counter[str] = Counter()

    # --- staging (no call counted) ---------------------------------------------------------

    def new_task(self, verb: str, tag: str | None) -> str:
        tid = str(uuid.uuid4())
        task = {"taskID": tid, "taskState": "finished", "taskResult": "success", "code": 0,
                "message": "", "verb": verb, "tag": tag, "created": len(self.tasks),
                "progress": {"bytes_done": 4096, "bytes_total": 4096}}
        self.tasks[tid] = task
        self.by_tag.setdefault(str(tag), {})[tid] = task
        return tid

    def copy(self, src: str, dst: str, img: str) -> None:
        self.where[(dst, img)] = self.where[(src, img)]

    def forget(self, tid: str) -> bool:
        task = self.tasks.pop(tid, None)
        if task is not None:
            self.by_tag.get(str(task["tag"]), {}).pop(tid, None)
        return task is not None

    def stage_copy(self, src: str, dst: str, img: str, tag: str) -> str:
        """A finished copy tagged ``tag``: the image group's volumes on ``dst`` too."""
        self.copy(src, dst, img)
        return self.new_task("Image.move", tag)

    def stage_clear(self, task_id: str) -> None:
        self.forget(task_id)

    def stage_delete(self, sd: str, img: str, tag: str) -> str:
        """A finished deletion tagged ``tag``: the image group gone from ``sd``."""
        self.where.pop((sd, img))
        return self.new_task("Image.delete", tag)

    # --- the verbs -------------------------------------------------------------------------

    def tasks_by_tag(self, tag: str) -> list[dict[str, Any]]:
        self.calls["tasks_by_tag"] += 1
        return sorted(self.by_tag.get(tag, {}).values(), key=lambda t: t["created"])

    def get_all_tasks_statuses(self, tags: list[str] | None = None) -> dict[str, dict[str, Any]]:
        self.calls["get_all_tasks_statuses"] += 1
        if tags is None:
            return dict(self.tasks)
        return {t["taskID"]: t for x in tags for t in self.by_tag.get(x, {}).values()}

    def move_image(self, sp: str, src: str, dst: str, img: str, op: int, postZero: bool = False,
                   force: bool = False, tag: str | None = None) -> str:
        self.calls["move_image"] += 1
        self.copy(src, dst, img)
        return self.new_task("Image.move", tag)

    def delete_image(self, sp: str, sd: str, img: str, postZero: bool = False, force: bool = False,
                     tag: str | None = None) -> str:
        self.calls["delete_image"] += 1
        if (sd, img) not in self.where:
            raise agent_errors.ImageDoesNotExistInSD("no such image", imgUUID=img, sdUUID=sd)
        self.where.pop((sd, img))
        return self.new_task("Image.delete", tag)

    def get_task_status(self, tid: str) -> dict[str, Any]:
        self.calls["get_task_status"] += 1
        if tid not in self.tasks:
            raise agent_errors.UnknownTask("no such task", taskID=tid)
        return self.tasks[tid]

    def wait_task(self, tid: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.get_task_status(tid)

    def clear_task(self, tid: str) -> bool:
        self.calls["clear_task"] += 1
        return self.forget(tid)

    def volumes_info(self, sp: str, sd: str, img: str) -> list[dict[str, Any]]:
        self.calls["volumes_info"] += 1
        if (sd, img) not in self.where:
            raise agent_errors.ImageDoesNotExistInSD("no such image", imgUUID=img, sdUUID=sd)
        return [{"volUUID": v, "image": img, "legality": "LEGAL", "checksum": "c"}
                for v in self.where[(sd, img)]]

    def verify_image(self, sp: str, sd: str, img: str,
                     expected: dict[str, str] | None = None) -> dict[str, Any]:
        self.calls["verify_image"] += 1
        if (sd, img) not in self.where:
            raise agent_errors.ImageDoesNotExistInSD("no such image", imgUUID=img, sdUUID=sd)
        return {"volumes": {v: "c" for v in self.where[(sd, img)]}}


class Crash(BaseException):
    """Stands for SIGKILL at a crash point: nothing after it runs (no handler catches it)."""


_target: list[str | None] = [None]


def _crash_point(name: str) -> None:
    if name == _target[0]:
        raise Crash(name)


def arm_crash_points() -> None:
    """Crash points raise Crash at the point named by ``_target`` (in this process only)."""
    for mod in (move, end, remove, cleanup, recover, store):
        if hasattr(mod, "crash_point"):
            mod.crash_point = _crash_point  # type: ignore[attr-defined]


def spec(n: int, tag: str) -> dict[str, Any]:
    return {"data_centers": [{
        "name": f"dc-{tag}",
        "domains": [{"name": f"S-{tag}", "capacity": "4T"}, {"name": f"D-{tag}", "capacity": "4T"}],
        "vms": [{"name": f"vm-{tag}-{v}", "disks": [
            {"alias": f"d{v}-{i}-{tag}", "domain": f"S-{tag}", "size": "64K", "data": "4K"}
            for i in range(min(100, n - v * 100))]} for v in range((n + 99) // 100)],
    }]}


# --- staging ---------------------------------------------------------------------------------

def stage_by_engine(eng: Engine, disk: str, dest: str, point: str) -> uuid.UUID:
    """One move started and run by the engine until it reaches ``point`` (the slow way)."""
    cmd = eng.start(uuid.UUID(disk), uuid.UUID(dest))
    if point != "after_phase1_commit":
        _target[0] = point
        try:
            eng.run(cmd)
            raise AssertionError(f"the move of {disk} never reached {point}")
        except Crash:
            pass
        finally:
            _target[0] = None
    return cmd.command_id


class Storage(Protocol):
    """The storage side of staging: what the agent did for a move stopped at a point."""

    def stage_copy(self, src: str, dst: str, img: str, tag: str) -> str: ...
    def stage_clear(self, task_id: str) -> None: ...
    def stage_delete(self, sd: str, img: str, tag: str) -> str: ...


def stage_bulk(conn: psycopg.Connection[Any], storage: Storage, moves: list[tuple[str, str]],
               dest: str, src: str, owner: str, lease: int = LEASE) -> list[uuid.UUID]:
    """Moves (disk, crash point) left as a process stopped at that point leaves them, in the
    order a move does it: phase 1 (StartMoveDiskCommand) of all of them in one statement; the
    copies at the agent; their records and phase 3 (RecordMoveDiskCopyTask,
    SwitchMoveDiskCommand), one statement each; the copy tasks cleared and the source
    deletions at the agent; their records (RecordMoveDiskDeleteTask). The command ids."""
    ids = [uuid.uuid4() for _ in moves]
    by_phase: dict[str, list[int]] = {}
    for i, (_, point) in enumerate(moves):
        for phase in PLAN[point][0]:
            by_phase.setdefault(phase, []).append(i)
    cur = conn.cursor()

    def phase(query: str, rows: list[int], *arrays: list[Any], args: tuple[Any, ...]) -> None:
        if rows:
            with conn.transaction():
                done = cur.execute(query, (*arrays, *args)).fetchone()
            assert done is not None and list(done.values())[0] == len(rows), (query, done)

    rows = by_phase.get("start", [])
    phase("SELECT count(*) FROM unnest(%s::uuid[], %s::uuid[]) AS m(cmd, disk) "
          "CROSS JOIN LATERAL public.startmovediskcommand(m.cmd, m.disk, %s, %s, %s) AS c",
          rows, [ids[i] for i in rows], [moves[i][0] for i in rows], args=(dest, owner, lease))
    copy_task = {i: storage.stage_copy(src, dest, disk, str(ids[i]))
                 for i, (disk, point) in enumerate(moves) if "copy" in PLAN[point][1]}
    rows = by_phase.get("record_copy", [])
    phase("SELECT count(*) FROM unnest(%s::uuid[], %s::uuid[]) AS m(cmd, task) "
          "CROSS JOIN LATERAL public.recordmovediskcopytask(m.cmd, %s, %s, m.task) AS c",
          rows, [ids[i] for i in rows], [copy_task[i] for i in rows], args=(owner, lease))
    rows = by_phase.get("switch", [])
    phase("SELECT count(*) FROM unnest(%s::uuid[]) AS m(cmd) "
          "CROSS JOIN LATERAL public.switchmovediskcommand(m.cmd, %s, %s) AS c",
          rows, [ids[i] for i in rows], args=(owner, lease))
    delete_task: dict[int, str] = {}
    for i, (disk, point) in enumerate(moves):
        if "delete" in PLAN[point][1]:
            storage.stage_clear(copy_task[i])
            delete_task[i] = storage.stage_delete(src, disk, str(ids[i]))
    rows = by_phase.get("record_delete", [])
    phase("SELECT count(*) FROM unnest(%s::uuid[], %s::uuid[]) AS m(cmd, task) "
          "CROSS JOIN LATERAL public.recordmovediskdeletetask(m.cmd, %s, %s, m.task) AS c",
          rows, [ids[i] for i in rows], [delete_task[i] for i in rows], args=(owner, lease))
    return ids


def snapshot(conn: psycopg.Connection[Any], agent: Any, command_id: uuid.UUID) -> dict[str, Any]:
    """What a stopped move left, without its ids: the command's stage, recorded tasks and lease;
    the original and the temporary disk's volumes (status, domains), their images_to_be_deleted
    rows, pending deletions, the command's async_tasks and command_entities rows; at the agent,
    the tasks tagged with the command id (once finished) and which domains hold the disk."""
    q = conn.execute
    c = q("SELECT * FROM public.move_disk_commands WHERE command_id = %s", (command_id,)).fetchone()
    assert c is not None, command_id

    def vols(disk: Any) -> list[tuple[Any, ...]]:
        return sorted((r["imagestatus"], r["parent_is_null"], r["domain"]) for r in q(
            "SELECT i.imagestatus, i.parentid = '00000000-0000-0000-0000-000000000000' "
            "AS parent_is_null, CASE m.storage_domain_id WHEN %s THEN 'S' WHEN %s THEN 'D' "
            "ELSE coalesce(m.storage_domain_id::text, '-') END AS domain FROM public.images i "
            "LEFT JOIN public.image_storage_domain_map m ON m.image_id = i.image_guid "
            "WHERE i.image_group_id = %s", (c["src_storage"], c["dest_storage"], disk)))

    def tasks() -> list[tuple[Any, ...]]:
        out = []
        for t in agent.tasks_by_tag(str(command_id)):
            if t.get("taskState") != "finished":
                t = agent.wait_task(t["taskID"], timeout=60.0)
            out.append((t.get("verb"), t.get("taskResult"),
                        "recorded-copy" if str(c["copy_task_id"]) == t["taskID"] else
                        "recorded-delete" if str(c["delete_task_id"]) == t["taskID"] else ""))
        return sorted(out)

    def holds(sd: Any) -> bool:
        try:
            return bool(agent.volumes_info(str(c["storage_pool_id"]), str(sd),
                                           str(c["image_group_id"])))
        except agent_errors.AgentError:
            return False

    itbd = q("SELECT count(*) AS n FROM public.images_to_be_deleted t JOIN public.images i "
             "ON i.image_guid = t.image_id WHERE i.image_group_id = %s",
             (c["temporary_disk_id"],)).fetchone()["n"]
    pending = sorted((r["reason"], r["storage_domain_id"] == c["src_storage"]) for r in q(
        "SELECT reason, storage_domain_id FROM public.image_groups_to_be_deleted "
        "WHERE image_group_id = %s", (c["image_group_id"],)))
    async_tasks = sorted(r["action_type"] for r in q(
        "SELECT action_type FROM public.async_tasks WHERE command_id = %s", (command_id,)))
    entity = q("SELECT command_type, status FROM public.command_entities WHERE command_id = %s",
               (command_id,)).fetchone()
    return {
        "stage": c["stage"], "copy_task_recorded": c["copy_task_id"] is not None,
        "delete_task_recorded": c["delete_task_id"] is not None,
        "ended": c["ended_at"] is not None, "leased": c["lease_owner"] is not None,
        "original": vols(c["image_group_id"]), "temporary": vols(c["temporary_disk_id"]),
        "images_to_be_deleted": itbd, "pending_deletions": pending,
        "async_tasks": async_tasks, "command_entity": dict(entity) if entity else None,
        "agent_tasks": tasks(), "on_S": holds(c["src_storage"]), "on_D": holds(c["dest_storage"]),
    }


def check_staging(conn: psycopg.Connection[Any], agent: BenchAgent,
                  by_engine: dict[str, list[uuid.UUID]], bulk: dict[str, list[uuid.UUID]]) -> int:
    """Every engine-staged move against bulk-staged moves of its point; the number compared."""
    n = 0
    for point, ids in by_engine.items():
        for a, b in zip(ids, bulk[point]):
            sa, sb = snapshot(conn, agent, a), snapshot(conn, agent, b)
            assert sa == sb, f"{point}: the engine left {sa}, the bulk staging {sb}"
            n += 1
    return n


def stage(conn: psycopg.Connection[Any], eng: Engine, agent: BenchAgent, disks: list[str],
          dest: str, src: str, sample: int) -> tuple[dict[str, int], dict[str, list[uuid.UUID]],
                                                     dict[str, list[uuid.UUID]]]:
    """Moves of ``disks`` stopped round-robin at the points, by ``eng``'s owner: the first
    ``sample`` per point by the engine, the rest in bulk. The stages they are left in, the
    engine-staged and (a few) bulk-staged command ids by point."""
    points = [POINTS[i % len(POINTS)] for i in range(len(disks))]
    by_engine: dict[str, list[uuid.UUID]] = {}
    rest: list[tuple[str, str]] = []
    for d, p in zip(disks, points):
        if len(by_engine.get(p, [])) < sample:
            by_engine.setdefault(p, []).append(stage_by_engine(eng, d, dest, p))
        else:
            rest.append((d, p))
    ids = stage_bulk(conn, agent, rest, dest, src, eng.owner)
    bulk: dict[str, list[uuid.UUID]] = {}
    for cid, (_, p) in zip(ids, rest):
        if len(bulk.setdefault(p, [])) < sample:
            bulk[p].append(cid)
    stages = Counter(r["stage"] for r in conn.execute(
        "SELECT stage FROM public.move_disk_commands WHERE lease_owner = %s AND ended_at IS NULL",
        (eng.owner,)))
    return dict(stages), by_engine, bulk


def one_size(dsn: str, n: int, first: str, k: int, sample: int,
             workers: int = WORKERS) -> dict[str, Any]:
    """One round at ``n`` moves in flight (round ``k``); ``first`` is timed first."""
    tag = f"r{n}-{k}"
    t0 = time.perf_counter()
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        made = inventory.build(conn, None, spec(2 * n, tag), salt=tag)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("ANALYZE")  # as a database in use has statistics (plans fit the sizes)
    t_inv = time.perf_counter() - t0
    disks = [d["id"] for d in made.disks.values()]
    volumes = {d["id"]: d["volumes"] for d in made.disks.values()}
    src, dest = made.domains[f"S-{tag}"], made.domains[f"D-{tag}"]
    agent = BenchAgent(volumes, src)
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    live = Engine(Store(conn), agent, lease_seconds=LEASE, poll_seconds=0.0005,  # type: ignore[arg-type]
                  max_poll_seconds=0.002)
    gone = Engine(Store(conn), agent, owner=f"{socket.gethostname()}:999999999:gone-{tag}",  # type: ignore[arg-type]
                  lease_seconds=LEASE, poll_seconds=0.0005, max_poll_seconds=0.002)
    t0 = time.perf_counter()
    crashed, eng_gone, bulk_gone = stage(conn, gone, agent, disks[0::2], dest, src, sample)
    own, eng_live, bulk_live = stage(conn, live, agent, disks[1::2], dest, src, sample)
    t_stage = time.perf_counter() - t0
    checked = check_staging(conn, agent, eng_gone, bulk_gone) + \
        check_staging(conn, agent, eng_live, bulk_live)
    log(f"  {n}: inventory of {2 * n} disks {t_inv:.1f} s, staged {2 * n} moves in "
        f"{t_stage:.1f} s ({checked} engine-staged moves match bulk-staged ones): {crashed}")
    in_flight = sum(crashed.values())
    assert in_flight == n and sum(own.values()) == n, (crashed, own)
    conn.execute("VACUUM ANALYZE")

    times: dict[str, Any] = {}

    def do_recover() -> None:
        agent.calls.clear()
        t = time.perf_counter()
        report = run_recovery(live, workers=workers, connect=lambda: psycopg.connect(
            dsn, autocommit=True, row_factory=dict_row))
        times["recover"] = time.perf_counter() - t
        assert not report.errors, report.errors[:3]
        times["recovered"] = len(report.finished)
        times["recover_agent_calls"] = dict(agent.calls)
        times["recover_ended"] = dict(Counter(c.stage for c in report.finished))

    def do_normal() -> None:
        mine = [c for c in live.store.unfinished_moves() if c.lease_owner == live.owner]
        agent.calls.clear()
        t = time.perf_counter()
        ended = Counter(live.run(c).stage for c in mine)
        times["normal"] = time.perf_counter() - t
        times["normal_moves"] = len(mine)
        times["normal_agent_calls"] = dict(agent.calls)
        times["normal_ended"] = dict(ended)

    for step in ((do_recover, do_normal) if first == "recover" else (do_normal, do_recover)):
        step()
    left = live.store.unfinished_moves()
    assert not left, f"{len(left)} moves still unfinished"
    # Recovery compensates a move stopped right after phase 1 (no copy was asked: it ends
    # with failure); the live process goes on and copies. Every other point ends with success.
    assert times["recover_ended"].get("ENDED_FAILURE", 0) == crashed.get("TEMPORARY_CREATED", 0) \
        - sum(1 for i in range(n) if POINTS[i % len(POINTS)] in (
            "after_copy_accepted",)), (times["recover_ended"], crashed)
    conn.close()
    log(f"  {n}: recovery {times['recover']:.2f} s for {times['recovered']} moves, normal ends "
        f"{times['normal']:.2f} s for {times['normal_moves']} "
        f"(x{times['recover'] / times['normal']:.2f}); ended {times['recover_ended']} and "
        f"{times['normal_ended']}; agent calls: recovery "
        f"{times['recover_agent_calls']}, normal {times['normal_agent_calls']}")
    return {"n": n, "workers": workers, "in_flight": in_flight, "stages": crashed, "stages_own": own,
            "staging_s": round(t_stage, 2), "inventory_s": round(t_inv, 2),
            "staging_checked": checked, **times}


def main() -> None:
    arm_crash_points()
    small, large = min(SIZES), max(SIZES)
    plan = [(small, 0)] + [(n, 0) for n in SIZES if n != small] + \
        [(small, k) for k in range(1, SMALL_ROUNDS)]
    cluster = ThrowawayCluster()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as a:
            a.execute("CREATE DATABASE bench")
        dsn = cluster.dsn("bench")
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            deploy(conn)
        # Which half is timed first alternates from round to round.
        runs = [one_size(dsn, n, "recover" if i % 2 == 0 else "normal", k,
                         SAMPLE if i == 0 else 0) for i, (n, k) in enumerate(plan)]
        more = one_size(dsn, small, "recover", len(plan), 0, MORE_WORKERS) \
            if MORE_WORKERS > 1 else None
    finally:
        cluster.stop()
    figures = []
    by_n: dict[int, list[dict[str, Any]]] = {}
    for r in runs:
        by_n.setdefault(r["n"], []).append(r)
    med: dict[int, dict[str, float]] = {}
    for n, rs in sorted(by_n.items()):
        m = {"recover": statistics.median(r["recover"] for r in rs),
             "normal": statistics.median(r["normal"] for r in rs)}
        med[n] = m
        r0 = rs[0]
        figures.append(figure(
            f"recovery of {n} moves in flight", m["recover"], "s", m["normal"],
            baseline_what=f"the same number of moves ({r0['normal_moves']}) ended normally by "
                          "their own process from the same stages",
            goal=("<=", GOAL), group="recovery", rounds=len(rs),
            pairs=[(r["normal"], r["recover"]) for r in rs] if len(rs) > 1 else None,
            note=f"one process ({WORKERS} recovery worker{'s' if WORKERS > 1 else ''}); moves "
                 "staged in bulk by the phase functions (a sample by the engine, compared) with "
                 "an instant agent, spread over every stage; recover() against Engine.run of "
                 "the other half, which goes first alternating by round",
            extra={"moves": n, "recovered": r0["recovered"], "stages": r0["stages"],
                   "workers": WORKERS,
                   "per_move_ms": round(m["recover"] / n * 1000, 3),
                   "normal_per_move_ms": round(m["normal"] / n * 1000, 3),
                   "recover_s_by_round": [round(r["recover"], 3) for r in rs],
                   "normal_s_by_round": [round(r["normal"], 3) for r in rs],
                   "agent_calls": r0["recover_agent_calls"],
                   "normal_agent_calls": r0["normal_agent_calls"],
                   "staging_s": r0["staging_s"], "inventory_s": r0["inventory_s"],
                   "staging_checked": sum(r["staging_checked"] for r in rs)}))
    if large != small:
        per_small = [r["recover"] / small * 1000 for r in by_n[small]]
        per_large = [r["recover"] / large * 1000 for r in by_n[large]]
        figures.append(figure(
            f"recovery linearity: time per move at {large} against {small}",
            statistics.median(per_large), "ms/move", statistics.median(per_small),
            baseline_what=f"recovery's time per move at {small} moves in flight",
            goal=("<=", 1.25), group="recovery", rounds=len(per_small),
            pairs=[(p, b) for p in per_small for b in per_large] if len(per_small) > 1 else None,
            note=f"spread: the {large} run against each round at {small}; "
                 "normal_per_move_ratio: the same for the normal ends (the machine's drift)",
            extra={"normal_per_move_ratio": round(
                       (med[large]["normal"] / large) / (med[small]["normal"] / small), 3),
                   "sizes": sorted(med), "recover_s": [round(med[n]["recover"], 3) for n in
                                                       sorted(med)],
                   "normal_s": [round(med[n]["normal"], 3) for n in sorted(med)]}))
    if more is not None:
        figures.append(figure(
            f"recovery of {small} moves in flight, {MORE_WORKERS} workers", more["recover"], "s",
            more["normal"], baseline_what=f"the same number of moves ({more['normal_moves']}) "
            "ended normally by their own process from the same stages",
            goal=("<=", GOAL), group="recovery_workers", rounds=1,
            note=f"recover(workers={MORE_WORKERS}) (movedisk recover --workers "
                 f"{MORE_WORKERS}): threads with one connection each, on a machine of "
                 f"{os.cpu_count()} cores; otherwise as the figures above",
            extra={"workers": MORE_WORKERS, "against_one_worker_median": round(
                more["recover"] / med[small]["recover"], 3)}))
    emit("recovery", figures, series={
        "sizes": sorted(med), "recover_s": [round(med[n]["recover"], 3) for n in sorted(med)],
        "normal_s": [round(med[n]["normal"], 3) for n in sorted(med)],
        "median_ratio": round(statistics.median(
            med[n]["recover"] / med[n]["normal"] for n in med), 3)})


if __name__ == "__main__":
    main()
