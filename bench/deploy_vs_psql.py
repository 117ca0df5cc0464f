"""Deploy: a fresh deploy through the harness against ``psql -1 -f`` of the same files.

Both run against empty databases of one throwaway cluster, interleaved round by round
(the first one alternating); the harness also takes the advisory lock, checks
schema_version, snapshots the catalog and records the upgrade scripts. Then a no-op
redeploy (nothing pending) of the deployed database, timed against the same psql run.
Goals: fresh deploy at most 1.0x psql; no-op redeploy under half a second. (The deploy
into a database of 1M images is timed by lookups_at_scale.py.) Prints one JSON object
on its last line. Also measures what the test fixtures pay: cluster initdb+start and a
database clone.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, figure  # noqa: E402

from movedisk.deploy import deploy  # noqa: E402
from movedisk.pgserver import ThrowawayCluster  # noqa: E402
from movedisk.sqlfiles import SqlTree, split_statements  # noqa: E402

ROUNDS = 7


def create(cluster: ThrowawayCluster, name: str, template: str | None = None) -> float:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        t0 = time.perf_counter()
        if template:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return time.perf_counter() - t0


def main() -> None:
    t0 = time.perf_counter()
    cluster = ThrowawayCluster()
    start_s = time.perf_counter() - t0
    tree = SqlTree.load()
    extra = [f.path for f in (tree.privileges,) if f is not None]
    files = [f.path for f in (*([tree.roles] if tree.roles else []), *tree.tables)]
    files += [f.path for f in tree.procedures] + extra
    psql = str(cluster.binaries.program("psql"))
    harness_s: list[float] = []
    psql_s: list[float] = []
    clone_s: list[float] = []
    redeploy_s: list[float] = []
    try:
        def run_harness(i: int) -> None:
            create(cluster, f"h{i}")
            with psycopg.connect(cluster.dsn(f"h{i}"), row_factory=dict_row) as conn:
                t = time.perf_counter()
                deploy(conn, tree=tree)
                harness_s.append(time.perf_counter() - t)

        def run_psql(i: int) -> None:
            create(cluster, f"p{i}")
            args = [psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", cluster.dsn(f"p{i}")]
            for f in files:
                args += ["-f", str(f)]
            t = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True)
            psql_s.append(time.perf_counter() - t)

        for i in range(ROUNDS):
            for step in ((run_harness, run_psql) if i % 2 == 0 else (run_psql, run_harness)):
                step(i)
            clone_s.append(create(cluster, f"c{i}", "h0"))
        with psycopg.connect(cluster.dsn("h0"), row_factory=dict_row) as conn:
            for _ in range(ROUNDS):
                t = time.perf_counter()
                deploy(conn, tree=tree)
                redeploy_s.append(time.perf_counter() - t)
    finally:
        cluster.stop()
    h, p = statistics.median(harness_s), statistics.median(psql_s)
    r = statistics.median(redeploy_s)
    base = {"baseline_what": "psql -1 -f of the same files into an empty database",
            "group": "deploy"}
    emit("deploy_vs_psql", [
        figure("deploy fresh", h, "s", p, goal=("<=", 1.0),
               pairs=list(zip(psql_s, harness_s)), **base),
        figure("deploy no-op redeploy", r, "s", p, goal=("<", 0.5), goal_on="value",
               rounds=ROUNDS, **base),
    ], statements=sum(len(split_statements(f.read_text())) for f in files),
        cluster_initdb_start_s=round(start_s, 3),
        clone_from_template_median_ms=round(statistics.median(clone_s) * 1000, 1))


if __name__ == "__main__":
    main()
