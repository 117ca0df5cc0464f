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
import tempfile
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
    files += [f.path for f in tree.procedures]
    # privileges.sql grants on what package_objects records: for psql to run the same
    # statements (not a loop over an empty table) it gets the rows deploy records, as a file.
    records = Path(tempfile.mkdtemp(prefix="movedisk-bench-")) / "package_objects.sql"
    create(cluster, "rec")
    with psycopg.connect(cluster.dsn("rec")) as conn:
        deploy(conn, tree=tree)
        rows = conn.execute(
            "SELECT object_type, object_identity, source_file, statement_hash, definition_hash, "
            "adopted FROM public.package_objects ORDER BY 1, 2").fetchall()
        records.write_text("".join(
            sql.SQL("INSERT INTO public.package_objects (object_type, object_identity, "
                    "source_file, statement_hash, definition_hash, adopted) VALUES ({});\n")
            .format(sql.SQL(", ").join(map(sql.Literal, r))).as_string(conn) for r in rows))
    records.parent.chmod(0o755)  # psql may run as the server's account
    records.chmod(0o644)
    same = files + [records] + extra  # what the deploy runs
    statements = sum(len(split_statements(f.read_text())) for f in same)
    files = files + extra  # the files alone (the baseline before the records existed)
    psql = str(cluster.binaries.program("psql"))
    harness_s: list[float] = []
    psql_s: list[float] = []
    files_s: list[float] = []
    clone_s: list[float] = []
    redeploy_s: list[float] = []
    try:
        def run_harness(i: int) -> None:
            create(cluster, f"h{i}")
            with psycopg.connect(cluster.dsn(f"h{i}"), row_factory=dict_row) as conn:
                t = time.perf_counter()
                deploy(conn, tree=tree)
                harness_s.append(time.perf_counter() - t)

        def psql_run(db: str, paths: list[Path], into: list[float]) -> None:
            create(cluster, db)
            args = [psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", cluster.dsn(db)]
            for f in paths:
                args += ["-f", str(f)]
            t = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True)
            into.append(time.perf_counter() - t)

        def run_psql(i: int) -> None:
            psql_run(f"p{i}", same, psql_s)

        def run_files(i: int) -> None:
            psql_run(f"f{i}", files, files_s)

        for i in range(ROUNDS):
            order = (run_harness, run_psql, run_files)
            for step in order[i % 3:] + order[:i % 3]:
                step(i)
            clone_s.append(create(cluster, f"c{i}", "h0"))
        with psycopg.connect(cluster.dsn("h0"), row_factory=dict_row) as conn:
            for _ in range(ROUNDS):
                t = time.perf_counter()
                deploy(conn, tree=tree)
                redeploy_s.append(time.perf_counter() - t)
    finally:
        cluster.stop()
        records.unlink(missing_ok=True)
        records.parent.rmdir()
    h, p = statistics.median(harness_s), statistics.median(psql_s)
    r, fo = statistics.median(redeploy_s), statistics.median(files_s)
    base = {"baseline_what": "psql -1 -f of the same statements into an empty database: the "
                             "files, with the package_objects rows deploy records before "
                             "privileges.sql (which grants on them)",
            "group": "deploy"}
    emit("deploy_vs_psql", [
        figure("deploy fresh", h, "s", p, goal=("<=", 1.0),
               pairs=list(zip(psql_s, harness_s)), **base,
               extra={"files_only_psql_s": round(fo, 6), "ratio_vs_files_only": round(h / fo, 4),
                      "files_only_what": "psql -1 -f of the files alone (privileges.sql then "
                                         "grants on nothing: package_objects is empty)"}),
        figure("deploy no-op redeploy", r, "s", p, goal=("<", 0.5), goal_on="value",
               rounds=ROUNDS, **base),
    ], statements=statements,
        cluster_initdb_start_s=round(start_s, 3),
        clone_from_template_median_ms=round(statistics.median(clone_s) * 1000, 1))


if __name__ == "__main__":
    main()
