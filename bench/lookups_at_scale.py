"""Extended lookups vs their pre-feature versions at 1,000,000 images, in one run.

1. A throwaway cluster; a database deployed from the release-1 files (the engine schema as
   committed by 'Engine schema: complete', without the feature's files) and filled with
   1,000,000 images (two-volume disks on 10 domains; 10,000 of the images belong to
   5,000 To_Be_Deleted disks).
2. The pre-feature lookups are timed on it.
3. The upgrade (sql/upgrade/0001 + procedures) is deployed and timed.
4. 10,000 images_to_be_deleted rows are added; the same lookups are timed again (now the
   extended ones), plus the storage-match procedure.

Prints ONE JSON object: per lookup the ratio extended / pre-feature (median latencies), the
storage-match latency and the upgrade time.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.deploy import deploy  # noqa: E402
from harness.pgserver import ThrowawayCluster  # noqa: E402
from harness.sqlfiles import SqlTree  # noqa: E402

N_DISKS = 495_000  # ordinary two-volume disks
N_TMP = 5_000  # To_Be_Deleted disks (two volumes each): 10,000 temporary images


def uid(kind: int, n: str) -> str:
    """Ordered synthetic UUIDs (kind 1 disk, 2 image, 3 domain) as SQL text."""
    return f"('0000000{kind}-0000-4000-8000-' || lpad(to_hex({n}), 12, '0'))::uuid"


def domain_of(g: str) -> str:
    # Disks 1..N_TMP moved from domain g % 10 to (g + 1) % 10; their leftovers stay on g % 10.
    return (f"CASE WHEN {g} <= {N_TMP} THEN ({g} + 1) % 10 "
            f"WHEN {g} > {N_DISKS} THEN ({g} - {N_DISKS}) % 10 ELSE {g} % 10 END")


POPULATE = [
    "SET session_replication_role = replica",
    "SET maintenance_work_mem = '256MB'",
    "INSERT INTO storage_pool (id, name, description, status, master_domain_version) "
    "VALUES ('00000004-0000-4000-8000-000000000000', 'dc', '', 1, 1)",
    f"INSERT INTO storage_domain_static (id, storage, storage_name, storage_domain_type, storage_type) "
    f"SELECT {uid(3, 'k')}, 'x' || k, 'sd' || k, 1, 1 FROM generate_series(0, 9) AS k",
    f"INSERT INTO storage_domain_dynamic (id, available_disk_size, used_disk_size) "
    f"SELECT {uid(3, 'k')}, 100000, 0 FROM generate_series(0, 9) AS k",
    f"INSERT INTO storage_pool_iso_map (storage_id, storage_pool_id, status) "
    f"SELECT {uid(3, 'k')}, '00000004-0000-4000-8000-000000000000', 3 FROM generate_series(0, 9) AS k",
    # Secondary indexes are dropped for the load and rebuilt after (a sorted build is far
    # faster than 1M random inserts); primary keys stay.
    "CREATE TEMP TABLE saved_indexes AS SELECT i.indexrelid::regclass::text AS name, "
    "pg_get_indexdef(i.indexrelid) AS def FROM pg_index AS i WHERE i.indrelid IN "
    "('images'::regclass, 'image_storage_domain_map'::regclass, 'base_disks'::regclass, "
    "'disk_image_dynamic'::regclass) AND NOT EXISTS "
    "(SELECT 1 FROM pg_constraint AS c WHERE c.conindid = i.indexrelid)",
    "DO $$ DECLARE r record; BEGIN FOR r IN SELECT name FROM saved_indexes LOOP "
    "EXECUTE 'DROP INDEX ' || r.name; END LOOP; END $$",
    f"CREATE TEMP TABLE ids AS SELECT g, v, {uid(2, 'g * 2 + v')} AS img, {uid(2, 'g * 2')} AS base, "
    f"{uid(1, 'g')} AS disk, {uid(3, domain_of('g'))} AS sd "
    f"FROM generate_series(1, {N_DISKS + N_TMP}) AS g, generate_series(0, 1) AS v ORDER BY g, v",
    f"INSERT INTO base_disks (disk_id, disk_alias) SELECT disk, CASE WHEN g > {N_DISKS} "
    f"THEN 'disk' || (g - {N_DISKS}) || '_To_Be_Deleted' ELSE 'disk' || g END FROM ids WHERE v = 0 ORDER BY g",
    "INSERT INTO images (image_guid, creation_date, size, it_guid, parentid, imagestatus, lastmodified, "
    "volume_type, volume_format, image_group_id, active) "
    "SELECT img, now(), 10737418240, '00000000-0000-0000-0000-000000000000', "
    "CASE v WHEN 0 THEN '00000000-0000-0000-0000-000000000000'::uuid ELSE base END, "
    f"CASE WHEN g > {N_DISKS} THEN 4 ELSE 1 END, now(), 2, 4, disk, v = 1 FROM ids ORDER BY g, v",
    "INSERT INTO disk_image_dynamic (image_id, actual_size) SELECT img, 1073741824 FROM ids ORDER BY g, v",
    "INSERT INTO image_storage_domain_map (image_id, storage_domain_id) SELECT img, sd FROM ids ORDER BY g, v",
    "DO $$ DECLARE r record; BEGIN FOR r IN SELECT def FROM saved_indexes LOOP EXECUTE r.def; END LOOP; END $$",
    "DROP TABLE ids, saved_indexes",
    "SET session_replication_role = origin",
]

ADD_ROWS = (
    "INSERT INTO images_to_be_deleted (image_id, src_image_id, src_image_group_id, src_storage, "
    f"dest_storage) SELECT {uid(2, f'(s + {N_DISKS}) * 2 + v')}, {uid(2, 's * 2 + v')}, {uid(1, 's')}, "
    f"{uid(3, 's % 10')}, {uid(3, '(s + 1) % 10')} "
    f"FROM generate_series(1, {N_TMP}) AS s, generate_series(0, 1) AS v"
)


def populate(conn: psycopg.Connection[Any], with_rows: bool = True) -> None:
    """Fill a deployed database with 1,000,000 images (and the 10,000 rows if the table exists)."""
    for st in POPULATE:
        conn.execute(st)
    if with_rows:
        conn.execute(ADD_ROWS)
    conn.commit()


def release1_tree(dest: Path) -> SqlTree:
    log = subprocess.run(["git", "log", "--format=%H %s", "--reverse"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    commit = next(line.split()[0] for line in log if " Engine schema: complete" in line)
    tar = subprocess.run(["git", "archive", "--format=tar", commit, "sql"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as t:
        t.extractall(dest)
    added = subprocess.run(["git", "log", "--diff-filter=A", "--name-only", "--format=",
                            "--grep=^Feature:"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in added:
        if name.startswith("sql/"):
            (dest / name).unlink(missing_ok=True)
    return SqlTree.load(dest / "sql")


SAMPLE = [7, 1234, 250_001, 400_000, 494_999]  # ordinary disks (all with no leftover)
MOVED = [1, 2_500, 4_999]  # disks that moved and left a leftover
D = lambda g: f"0000001-0000-4000-8000-{g:012x}".rjust(36, "0")  # noqa: E731
I = lambda n: f"0000002-0000-4000-8000-{n:012x}".rjust(36, "0")  # noqa: E731, E741


def lookups() -> dict[str, list[tuple[str, tuple]]]:
    disks = SAMPLE + MOVED
    return {
        "GetImageByImageGuid": [("SELECT * FROM GetImageByImageGuid(%s)", (I(g * 2 + 1),)) for g in disks],
        "GetAncestralImageByImageGuid": [
            ("SELECT * FROM GetAncestralImageByImageGuid(%s, NULL, FALSE)", (I(g * 2 + 1),)) for g in disks],
        "GetSnapshotsByImageGroupId": [
            ("SELECT * FROM GetSnapshotsByImageGroupId(%s)", (D(g),)) for g in disks],
        "GetSnapshotByLeafGuid": [("SELECT * FROM GetSnapshotByLeafGuid(%s)", (I(g * 2 + 1),)) for g in disks],
        "GetVmImageByImageGuid": [("SELECT * FROM GetVmImageByImageGuid(%s)", (I(g * 2 + 1),)) for g in disks],
        # all_disks de-duplicates with DISTINCT ON before the disk filter: a full scan
        # (seconds at 1M images) before and after the feature; one call each.
        "GetDiskByDiskId": [("SELECT * FROM GetDiskByDiskId(%s, NULL, FALSE)", (D(g),)) for g in disks[:1]],
        "GetAllForStorageDomain": [
            ("SELECT count(*) FROM GetAllForStorageDomain(%s)",
             (f"0000003-0000-4000-8000-{k:012x}".rjust(36, "0"),)) for k in (3,)],
    }


def time_calls(conn: psycopg.Connection[Any], calls: list[tuple[str, tuple]], repeat: int) -> float:
    print(f"  {calls[0][0][:60]} x{len(calls)} x{repeat}", file=sys.stderr, flush=True)
    for q, p in calls:  # warm up
        conn.execute(q, p).fetchall()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for q, p in calls:
            conn.execute(q, p).fetchall()
        samples.append((time.perf_counter() - t0) / len(calls))
    return statistics.median(samples)


def main() -> None:
    out: dict[str, Any] = {"images": 2 * (N_DISKS + N_TMP), "images_to_be_deleted_rows": 2 * N_TMP}
    with ThrowawayCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        with psycopg.connect(cluster.dsn("bench"), row_factory=dict_row) as conn:
            deploy(conn, tree=release1_tree(Path(tmp)))
            t0 = time.perf_counter()
            print("populating", file=sys.stderr, flush=True)
            populate(conn, with_rows=False)
            conn.execute("VACUUM ANALYZE") if conn.autocommit else None
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
        out["populate_s"] = round(time.perf_counter() - t0, 1)
        with psycopg.connect(cluster.dsn("bench"), row_factory=dict_row, autocommit=True) as conn:
            conn.execute("SET jit = off")
            heavy = {"GetDiskByDiskId": 1, "GetAllForStorageDomain": 2}
            # The pre-feature recursive lookups scan every volume per call: few repeats.
            heavy_before = {**heavy, "GetAncestralImageByImageGuid": 1, "GetSnapshotByLeafGuid": 1}
            before = {name: time_calls(conn, calls if name not in heavy_before else calls[:2], heavy_before.get(name, 30)) for name, calls in lookups().items()}
        with psycopg.connect(cluster.dsn("bench"), row_factory=dict_row) as conn:
            t0 = time.perf_counter()
            report = deploy(conn)
            out["upgrade_s"] = round(time.perf_counter() - t0, 3)
            out["upgrade_scripts"] = report.upgrades_applied
            conn.execute(ADD_ROWS)
            conn.commit()
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as c:
            c.execute("VACUUM ANALYZE")
        with psycopg.connect(cluster.dsn("bench"), row_factory=dict_row, autocommit=True) as conn:
            conn.execute("SET jit = off")
            after = {name: time_calls(conn, calls if name not in heavy_before else calls[:2], heavy.get(name, 30)) for name, calls in lookups().items()}
            temps = [I((g + N_DISKS) * 2 + v) for g in MOVED for v in (0, 1)]
            match = time_calls(conn, [("SELECT IsSourceImageOnSourceStorage(%s)", (t,)) for t in temps], 200)
            match_rows = time_calls(
                conn, [("SELECT * FROM GetSourceImageOnSourceStorage(%s)", (t,)) for t in temps], 200)
            plan = time_calls(
                conn, [("SELECT * FROM GetImageToBeDeletedRemovalPlan(%s)", (t,)) for t in temps], 200)
        out["lookups_ms"] = {n: {"pre_feature": round(before[n] * 1e3, 3), "extended": round(after[n] * 1e3, 3)}
                             for n in before}
        out["ratios"] = {n: round(after[n] / before[n], 3) for n in before}
        out["max_ratio"] = max(out["ratios"].values())
        out["goal_max_ratio"] = 1.10
        out["storage_match_ms"] = {"IsSourceImageOnSourceStorage": round(match * 1e3, 3),
                                   "GetSourceImageOnSourceStorage": round(match_rows * 1e3, 3),
                                   "GetImageToBeDeletedRemovalPlan": round(plan * 1e3, 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
