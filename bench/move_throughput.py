"""Benchmark: whole disk moves per second with 1, 2 and 4 worker processes against pgbench's
simple-update rate (-N, as many clients as workers) on the same throwaway cluster in the same
run, with an instant agent (an in-process stand-in whose tasks finish at once: the engine and
the database alone) and with the real agent (qemu-img copies, fsynced, of 1-volume disks of
4 KiB of data); and what one move costs: round trips from the engine (a pipeline of calls is
one), the stored functions it calls (engine_function_calls_per_move), functions run in the
server (pg_stat_user_functions, nested calls included), agent RPCs; and,
as diagnostics, the CPU time per move of the engine's processes and of their backends against
a backend's CPU time per pgbench transaction (server_cpu_ratio: the ratio's floor on a machine
whose cores are all busy).

Prints one JSON object. Environment: BENCH_MOVES (disks per worker count with the real agent,
default 60; four times as many with the instant one), BENCH_SECONDS (pgbench duration, default
5), BENCH_ROUNDS (rounds of moves, each followed by pgbench for its share of BENCH_SECONDS,
default 5: each ratio comes with the spread of its rounds).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402

from movedisk import inventory  # noqa: E402
from movedisk.agent import SimControl, StorageClient, wait_for_agent  # noqa: E402
from movedisk.deploy import deploy  # noqa: E402
from movedisk.engine.move import Engine  # noqa: E402
from movedisk.engine.store import Store  # noqa: E402
from movedisk.pgserver import ThrowawayCluster  # noqa: E402

MOVES = int(os.environ.get("BENCH_MOVES", 60))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))
# Rounds of moves interleaved with pgbench runs of SECONDS / ROUNDS seconds (at least 1) each.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
PGBENCH_ROUND_SECONDS = max(1, SECONDS // ROUNDS)


def spec(n: int, tag: str) -> dict:
    return {"data_centers": [{
        "name": f"dc-{tag}",
        "domains": [{"name": f"S-{tag}", "capacity": "1G"}, {"name": f"D-{tag}", "capacity": "1G"}],
        "vms": [{"name": f"vm-{tag}", "disks": [
            {"alias": f"d{i}-{tag}", "domain": f"S-{tag}", "size": "64K", "data": "4K"}
            for i in range(n)]}],
    }]}


class CountingClient(StorageClient):
    calls = 0

    def call(self, method: str, **params):  # type: ignore[override]
        CountingClient.calls += 1
        return super().call(method, **params)


class InstantAgent:
    """The StorageClient verbs the engine uses, answered at once from memory: a copy or a
    deletion is finished when asked (what the engine and the database cost, alone)."""

    calls = 0

    def __init__(self, volumes: dict[str, list[str]], src: str) -> None:
        self.where = {(src, img): vols for img, vols in volumes.items()}
        self.tasks: dict[str, dict] = {}

    def _task(self, verb: str, tag: str | None) -> str:
        tid = str(uuid.uuid4())
        self.tasks[tid] = {"taskID": tid, "taskState": "finished", "taskResult": "success",
                           "code": 0, "message": "", "verb": verb, "tag": tag, "created": 0,
                           "progress": {"bytes_done": 4096, "bytes_total": 4096}}
        return tid

    def tasks_by_tag(self, tag: str) -> list[dict]:
        InstantAgent.calls += 1
        return [t for t in self.tasks.values() if t["tag"] == tag]

    def move_image(self, sp, src, dst, img, op, postZero=False, force=False, tag=None) -> str:
        InstantAgent.calls += 1
        self.where[(dst, img)] = self.where[(src, img)]
        return self._task("Image.move", tag)

    def delete_image(self, sp, sd, img, postZero=False, force=False, tag=None) -> str:
        InstantAgent.calls += 1
        self.where.pop((sd, img), None)
        return self._task("Image.delete", tag)

    def get_task_status(self, tid: str) -> dict:
        InstantAgent.calls += 1
        return self.tasks[tid]

    def wait_task(self, tid: str, timeout: float = 60.0) -> dict:
        return self.get_task_status(tid)

    def clear_task(self, tid: str) -> bool:
        InstantAgent.calls += 1
        return self.tasks.pop(tid, None) is not None

    def volumes_info(self, sp, sd, img) -> list[dict]:
        from movedisk.agent.errors import ImageDoesNotExistInSD

        InstantAgent.calls += 1
        if (sd, img) not in self.where:
            raise ImageDoesNotExistInSD("no such image", imgUUID=img, sdUUID=sd)
        return [{"volUUID": v, "image": img, "legality": "LEGAL", "checksum": "c"}
                for v in self.where[(sd, img)]]

    def verify_image(self, sp, sd, img, expected=None) -> dict:
        """Image.verify answered from memory: the copy is what the move made (checksum "c")."""
        from movedisk.agent.errors import ImageDoesNotExistInSD, ImageVerificationError

        InstantAgent.calls += 1
        if (sd, img) not in self.where:
            raise ImageDoesNotExistInSD("no such image", imgUUID=img, sdUUID=sd)
        vols = self.where[(sd, img)]
        if expected and any(v not in vols or c != "c" for v, c in expected.items()):
            raise ImageVerificationError("checksum differs", imgUUID=img, sdUUID=sd)
        return {"verified": list(vols), "seconds": 0.0}


def worker(dsn: str, sock: str | None, rounds: list[list[str]], dest: str, out: mp.Queue,
           volumes: dict[str, list[str]], src: str, ready: mp.Queue, gos: list[Any]) -> None:
    """Moves its share of each round's disks when that round's signal comes; one report each."""
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    backend = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    client = CountingClient(sock) if sock else InstantAgent(volumes, src)
    eng = Engine(Store(conn), client, poll_seconds=0.002, max_poll_seconds=0.01)
    ready.put(1)
    for go, disks in zip(gos, rounds):
        go.wait()
        server0, client0 = cpu_seconds(backend), time.process_time()
        ended = [eng.run(eng.start(uuid.UUID(d), uuid.UUID(dest))).stage for d in disks]
        server1, client1 = cpu_seconds(backend), time.process_time()
        out.put({"stages": ended, "store_calls": sum(eng.store.calls.values()),
                 "round_trips": eng.store.round_trips,
                 "agent_calls": CountingClient.calls + InstantAgent.calls,
                 "by_function": dict(eng.store.calls), "client_cpu_s": client1 - client0,
                 "server_cpu_s": None if server0 is None or server1 is None else server1 - server0})


def cpu_seconds(pid: int, children: bool = False) -> float | None:
    """CPU time (user + system) of process ``pid`` on this host (with ``children``: of its
    exited children, e.g. the postmaster's ended backends), or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[13]) + int(fields[14]) if children else int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def pgbench(cluster: ThrowawayCluster, db: str, clients: int,
            seconds: int) -> tuple[float, int, float | None]:
    """pgbench -N for ``seconds``: transactions per second, how many, and the server's CPU time
    per transaction (its backends', read from the postmaster's exited children once they
    disconnected)."""
    prog = str(cluster.binaries.program("pgbench"))
    postmaster = postmaster_pid(cluster)
    before = cpu_seconds(postmaster, children=True) if postmaster else None
    res = subprocess.run([prog, "-N", "-c", str(clients), "-j", str(clients), "-T", str(seconds),
                          cluster.dsn(db)], check=True, capture_output=True, text=True)
    time.sleep(0.3)  # the postmaster reaps the ended backends
    after = cpu_seconds(postmaster, children=True) if postmaster else None
    done = int(re.search(r"transactions actually processed: ([0-9]+)", res.stdout).group(1))
    per_tx = None if before is None or after is None or not done else (after - before) / done
    return float(re.search(r"tps = ([0-9.]+)", res.stdout).group(1)), done, per_tx


def machine_busy_seconds() -> float | None:
    """Core-seconds this host's CPUs spent busy since boot (/proc/stat: all but idle and iowait)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def postmaster_pid(cluster: ThrowawayCluster) -> int | None:
    try:
        return int((cluster.base / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def main() -> int:
    cluster = ThrowawayCluster()
    work = Path(tempfile.mkdtemp(prefix="mdbench-", dir="/tmp"))
    agent = None
    try:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as a:
            a.execute("CREATE DATABASE bench")
            a.execute("CREATE DATABASE pgb")
            a.execute("ALTER DATABASE bench SET track_functions = 'all'")
        dsn = cluster.dsn("bench")
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            deploy(conn)
        sock = str(work / "agent.sock")
        agent = subprocess.Popen([sys.executable, "-m", "movedisk.agent.server", "--root",
                                  str(work / "agent"), "--socket", sock],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
        wait_for_agent(sock)
        sim = SimControl(sock)
        results: dict = {"instant_agent": {}, "real_agent": {}}
        for agent_kind, workers in [("instant_agent", w) for w in (1, 2, 4)] + [
                ("real_agent", w) for w in (1, 2, 4)]:
            instant = agent_kind == "instant_agent"
            tag = f"{agent_kind[0]}w{workers}"
            with psycopg.connect(dsn, row_factory=dict_row) as conn:
                made = inventory.build(conn, None if instant else sim,
                                       spec(MOVES * (4 if instant else 1), tag), salt=tag)
            disks = [d["id"] for d in made.disks.values()]
            volumes = {d["id"]: d["volumes"] for d in made.disks.values()}
            dest = made.domains[f"D-{tag}"]
            src = made.domains[f"S-{tag}"]
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("SELECT pg_stat_reset()")
            time.sleep(0.6)  # the statistics collector's reset reaches the counters
            q: mp.Queue = mp.Queue()
            ready: mp.Queue = mp.Queue()
            gos = [mp.Event() for _ in range(ROUNDS)]
            # Round r moves disks[r::ROUNDS]; worker i moves its i-th share of them.
            per_round = [disks[r::ROUNDS] for r in range(ROUNDS)]
            procs = [mp.Process(target=worker, args=(
                dsn, None if instant else sock, [ds[i::workers] for ds in per_round], dest, q,
                {d: volumes[d] for ds in per_round for d in ds[i::workers]}, src, ready, gos))
                for i in range(workers)]
            for p in procs:
                p.start()
            for _ in procs:
                ready.get(timeout=60)  # connected, waiting: process start-up is not timed
            prog = str(cluster.binaries.program("pgbench"))
            subprocess.run([prog, "-i", "-q", "-s", "1", cluster.dsn("pgb")], check=True,
                           capture_output=True)
            # Interleaved: a round of moves, then pgbench for its share of BENCH_SECONDS, ...
            pairs, seconds, others, outs, tx, tx_seconds, tx_cpu = [], 0.0, 0.0, [], 0, 0.0, []
            for r in range(ROUNDS):
                t0 = time.perf_counter()
                busy0 = machine_busy_seconds()
                gos[r].set()
                got = [q.get(timeout=600) for _ in procs]
                busy1 = machine_busy_seconds()
                took = time.perf_counter() - t0
                outs += got
                seconds += took
                # What else kept the machine's cores busy meanwhile (other jobs, the agent...):
                # busy core-seconds not spent by the workers or their backends.
                ours = sum(o["client_cpu_s"] + (o["server_cpu_s"] or 0) for o in got)
                if busy0 is not None and busy1 is not None:
                    others += max(0.0, busy1 - busy0 - ours)
                tps, done, per_tx = pgbench(cluster, "pgb", workers, PGBENCH_ROUND_SECONDS)
                tx += done
                tx_seconds += done / tps
                if per_tx is not None:
                    tx_cpu.append(per_tx)
                pairs.append((1000 / tps, took * 1000 / len(per_round[r])))
            for p in procs:
                p.join()
            time.sleep(0.6)
            with psycopg.connect(dsn, autocommit=True) as c:
                fn_calls = c.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions").fetchone()[0]
            stages = [s for o in outs for s in o["stages"]]
            assert stages == ["ENDED_SUCCESS"] * len(disks), set(stages)
            last = outs[-len(procs):]  # each worker's last report carries its totals
            tps = tx / tx_seconds
            rate = len(disks) / seconds
            srv = [o["server_cpu_s"] for o in outs]
            server_cpu = None if None in srv else sum(srv) / len(disks)
            pgb_cpu = statistics.median(tx_cpu) if tx_cpu else None
            results[agent_kind][str(workers)] = {
                "moves": len(disks), "seconds": round(seconds, 3), "moves_per_s": round(rate, 1),
                "pgbench_simple_update_tps": round(tps, 1),
                "ratio_moves_to_pgbench_tx": round(rate / tps, 4),
                "pgbench_tx_per_move": round(tps / rate, 1),
                # Per round (interleaved): [ms per pgbench transaction, ms per move].
                "rounds": [[round(b, 4), round(v, 4)] for b, v in pairs],
                "round_trips_per_move": round(sum(o["round_trips"] for o in last) / len(disks), 2),
                "engine_function_calls_per_move": round(sum(o["store_calls"] for o in last) / len(disks), 2),
                "server_function_calls_per_move": round(int(fn_calls) / len(disks), 2),
                "agent_rpcs_per_move": round(sum(o["agent_calls"] for o in last) / len(disks), 2),
                # Diagnostics (not the figure): CPU time per move of the engine's processes and
                # of their database backends, and of a backend per pgbench -N transaction.
                "client_cpu_ms_per_move": round(sum(o["client_cpu_s"] for o in outs) / len(disks) * 1e3, 3),
                "server_cpu_ms_per_move": None if server_cpu is None else round(server_cpu * 1e3, 3),
                "pgbench_server_cpu_ms_per_tx": None if pgb_cpu is None else round(pgb_cpu * 1e3, 4),
                "server_cpu_ratio": (None if server_cpu is None or not pgb_cpu
                                     else round(server_cpu / pgb_cpu, 1)),
                "other_busy_cores": None if busy0 is None else round(others / seconds, 2),
            }
            if workers == 1 and instant:
                results["calls_of_one_worker"] = last[0]["by_function"]
        print(json.dumps({"bench": "move_throughput", "results": results}, indent=1))
    finally:
        if agent is not None:
            agent.kill()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
