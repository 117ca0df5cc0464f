"""Benchmark: whole disk moves per second with 1, 2 and 4 worker processes and an agent whose
copies are instant (1-volume disks of 4 KiB of data), against pgbench's simple-update rate
(-N, as many clients as workers) on the same throwaway cluster in the same run; and what one
move costs: round trips from the engine (stored function calls), functions run in the server
(pg_stat_user_functions, nested calls included), agent RPCs.

Prints one JSON object. Environment: BENCH_MOVES (disks per worker count, default 120),
BENCH_SECONDS (pgbench duration, default 5).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

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

MOVES = int(os.environ.get("BENCH_MOVES", 120))
SECONDS = int(os.environ.get("BENCH_SECONDS", 5))


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


def worker(dsn: str, sock: str, disks: list[str], dest: str, out: mp.Queue) -> None:
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    client = CountingClient(sock)
    eng = Engine(Store(conn), client, poll_seconds=0.002, max_poll_seconds=0.01)
    ended = []
    for d in disks:
        ended.append(eng.run(eng.start(uuid.UUID(d), uuid.UUID(dest))).stage)
    out.put({"stages": ended, "store_calls": sum(eng.store.calls.values()),
             "agent_calls": CountingClient.calls, "by_function": dict(eng.store.calls)})


def pgbench(cluster: ThrowawayCluster, db: str, clients: int) -> float:
    prog = str(cluster.binaries.program("pgbench"))
    dsn = cluster.dsn(db)
    subprocess.run([prog, "-i", "-q", "-s", "1", dsn], check=True, capture_output=True)
    res = subprocess.run([prog, "-N", "-c", str(clients), "-j", str(clients), "-T", str(SECONDS),
                          dsn], check=True, capture_output=True, text=True)
    return float(re.search(r"tps = ([0-9.]+)", res.stdout).group(1))


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
        results = {}
        for workers in (1, 2, 4):
            tag = f"w{workers}"
            with psycopg.connect(dsn, row_factory=dict_row) as conn:
                made = inventory.build(conn, sim, spec(MOVES, tag), salt=tag)
            disks = [d["id"] for d in made.disks.values()]
            dest = made.domains[f"D-{tag}"]
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("SELECT pg_stat_reset()")
            time.sleep(0.6)  # the statistics collector's reset reaches the counters
            q: mp.Queue = mp.Queue()
            procs = [mp.Process(target=worker, args=(dsn, sock, disks[i::workers], dest, q))
                     for i in range(workers)]
            t0 = time.perf_counter()
            for p in procs:
                p.start()
            outs = [q.get(timeout=600) for _ in procs]
            for p in procs:
                p.join()
            seconds = time.perf_counter() - t0
            time.sleep(0.6)
            with psycopg.connect(dsn, autocommit=True) as c:
                fn_calls = c.execute("SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions").fetchone()[0]
            stages = [s for o in outs for s in o["stages"]]
            assert stages == ["ENDED_SUCCESS"] * len(disks), set(stages)
            tps = pgbench(cluster, "pgb", workers)
            rate = len(disks) / seconds
            results[str(workers)] = {
                "moves": len(disks), "seconds": round(seconds, 3), "moves_per_s": round(rate, 1),
                "pgbench_simple_update_tps": round(tps, 1),
                "ratio_moves_to_pgbench_tx": round(rate / tps, 4),
                "round_trips_per_move": round(sum(o["store_calls"] for o in outs) / len(disks), 2),
                "server_function_calls_per_move": round(int(fn_calls) / len(disks), 2),
                "agent_rpcs_per_move": round(sum(o["agent_calls"] for o in outs) / len(disks), 2),
            }
            if workers == 1:
                results["calls_of_one_worker"] = outs[0]["by_function"]
        print(json.dumps({"bench": "move_throughput", "results": results}, indent=1))
    finally:
        if agent is not None:
            agent.kill()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
