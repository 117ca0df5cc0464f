"""Extended lookups vs their pre-feature versions at 10k, 100k and 1M images, interleaved.

1. One throwaway cluster; per size a database of release 1 (tests/fixtures/release_1.sql,
   the frozen dump the upgrade tests load: the engine schema without the feature, and a
   few rows) filled with two-volume disks on 10 domains, 1% of the images being temporary
   (To_Be_Deleted) volumes of moves: 10,000 of 1,000,000.
2. The upgrade to the current files (``deploy``) is timed there: the deploy into a
   database of that many images; then a no-op redeploy. Then the images_to_be_deleted
   rows are added and the database is VACUUM ANALYZEd.
3. In the same database, release 1's views and functions (make_release_1.py's
   ``release_1_tree``) are installed again in schema ``prefeature`` (their ``SET search_path`` rewritten to ``prefeature, public, pg_temp``):
   prefeature.GetX reads the pre-feature views over the same public tables.
4. Each lookup is timed pre-feature vs extended INTERLEAVED on one connection, with
   prepared statements, as a DAL sends them. Point lookups are timed in BATCHES: per round
   BATCH ids are drawn from the data (ordinary disks, moved disks whose volumes have
   leftovers and temporary disks, in turn), and both versions are called with the same ids,
   the first side alternating from round to round: once PIPELINED (the BATCH calls sent back
   to back, the server running one after the other with no idle wait between them) and once
   one ROUND TRIP per call. The figure is the server backend's CPU time per call
   (/proc/PID/schedstat over the batch) in the pipelined batches: the server's whole work
   for the call (protocol, function, query), without the wake-up after each idle wait,
   which is the same for both sides but depends on the machine's load (measured at 0.018
   and 0.036 ms per call on the same database an hour apart, against 0.010-0.011 ms of
   pipelined work for a primary-key lookup), so it is the stricter and the more stable
   ratio. The round-trip ratio is reported beside it (round_trip_cpu_ratio), with its
   spread. Timing a batch instead of a call makes the clock's granularity and the machine's
   interruptions small against what is measured: the per-round ratios spread by a few
   percent (IQR), where per-call ratios spread by +-25%. Both sides are warmed up first
   (plpgsql's cached plans have made their custom/generic choice). The spread is the
   interquartile range of the per-round ratios. Lookups whose pre-feature version scans
   every volume (no goal) are timed per call, few rounds; listings per call (a second or
   more each at 1M), with parallel workers off on both sides so that the backend's CPU
   time is the whole of their work (their wall time, with workers on a loaded 2-core
   machine, varied by +-20% from call to call); the wall ratio is reported beside.
Prints ONE JSON object on its last line (progress on stderr). ``--explain`` also prints,
on stderr, EXPLAIN (ANALYZE, BUFFERS) of the view query behind each goal point lookup at
the largest size, on both sides. ``--sizes 10000,100000`` (or BENCH_SIZES) chooses the
sizes; BENCH_BUDGET_SCALE scales the seconds of rounds per lookup. ``--write-cost`` also
times, at the largest size and last, what the image_move_links trigger adds to phase 1 and to
RemoveTemporaryDisk (trigger enabled vs disabled, interleaved; not part of ``make bench``).
"""

from __future__ import annotations

import importlib.util
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import cpu_ns, emit, figure, loadavg, log, pct  # noqa: E402
from movedisk.deploy import deploy  # noqa: E402
from movedisk.pgserver import ThrowawayCluster  # noqa: E402
from movedisk.sqlfiles import SqlTree, split_statements  # noqa: E402


class Scale(NamedTuple):
    """``images`` volumes in two-volume disks; 1% of them temporary (To_Be_Deleted)."""

    images: int

    @property
    def n_tmp(self) -> int:  # To_Be_Deleted disks, two volumes each
        return self.images // 200

    @property
    def n_disks(self) -> int:  # ordinary disks; 1..n_tmp of them were moved
        return self.images // 2 - self.n_tmp

    @property
    def label(self) -> str:
        return f"{self.images // 1_000_000}M" if self.images >= 1_000_000 else f"{self.images // 1000}k"


SIZES = (Scale(10_000), Scale(100_000), Scale(1_000_000))
BIG = SIZES[-1]
N_DISKS = BIG.n_disks  # 495,000 ordinary disks at 1M images (tests/test_feature_scale.py)
N_TMP = BIG.n_tmp  # 5,000 To_Be_Deleted disks: 10,000 temporary images
GOAL_MAX_RATIO = 1.05  # extended / pre-feature, at 1M, for the GOAL lookups
STORAGE_MATCH_GOAL = 2.0  # storage match / primary-key lookup of images
# Seconds of interleaved rounds per lookup (after the warm-up); BENCH_BUDGET_SCALE scales them.
BUDGET_S = 4.0 * float(os.environ.get("BENCH_BUDGET_SCALE", "1"))
MAX_ROUNDS = 3000
BATCH = 200  # calls per batch of a point lookup (~15-30 ms of server time per batch)
MIN_BATCH_ROUNDS = 12
HEAVY_S = 0.25  # a first call slower than this: one warm-up call per side, few rounds
ONE_ROUND_S = 1.0  # a pre-feature call slower than this, on a lookup with no goal: one round


def uid(kind: int, n: str) -> str:
    """Ordered synthetic UUIDs (kind 1 disk, 2 image, 3 domain) as SQL text."""
    return f"('0000000{kind}-0000-4000-8000-' || lpad(to_hex({n}), 12, '0'))::uuid"


def populate_statements(sc: Scale) -> list[str]:
    nd, nt = sc.n_disks, sc.n_tmp
    # Disks 1..nt moved from domain g % 10 to (g + 1) % 10; their leftovers stay on g % 10.
    domain_of = (f"CASE WHEN g <= {nt} THEN (g + 1) % 10 "
                 f"WHEN g > {nd} THEN (g - {nd}) % 10 ELSE g % 10 END")
    return [
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
        f"{uid(1, 'g')} AS disk, {uid(3, domain_of)} AS sd "
        f"FROM generate_series(1, {nd + nt}) AS g, generate_series(0, 1) AS v ORDER BY g, v",
        f"INSERT INTO base_disks (disk_id, disk_alias) SELECT disk, CASE WHEN g > {nd} "
        f"THEN 'disk' || (g - {nd}) || '_To_Be_Deleted' ELSE 'disk' || g END FROM ids WHERE v = 0 ORDER BY g",
        "INSERT INTO images (image_guid, creation_date, size, it_guid, parentid, imagestatus, lastmodified, "
        "volume_type, volume_format, image_group_id, active) "
        "SELECT img, now(), 10737418240, '00000000-0000-0000-0000-000000000000', "
        "CASE v WHEN 0 THEN '00000000-0000-0000-0000-000000000000'::uuid ELSE base END, "
        f"CASE WHEN g > {nd} THEN 4 ELSE 1 END, now(), 2, 4, disk, v = 1 FROM ids ORDER BY g, v",
        "INSERT INTO disk_image_dynamic (image_id, actual_size) SELECT img, 1073741824 FROM ids ORDER BY g, v",
        "INSERT INTO image_storage_domain_map (image_id, storage_domain_id) SELECT img, sd FROM ids ORDER BY g, v",
        "DO $$ DECLARE r record; BEGIN FOR r IN SELECT def FROM saved_indexes LOOP EXECUTE r.def; END LOOP; END $$",
        "DROP TABLE ids, saved_indexes",
        "SET session_replication_role = origin",
    ]


def add_rows_statement(sc: Scale) -> str:
    """Temporary disk n_disks + s stands for moved disk s (volume by volume)."""
    nd, nt = sc.n_disks, sc.n_tmp
    return (
        "INSERT INTO images_to_be_deleted (image_id, src_image_id, src_image_group_id, src_storage, "
        f"dest_storage) SELECT {uid(2, f'(s + {nd}) * 2 + v')}, {uid(2, 's * 2 + v')}, {uid(1, 's')}, "
        f"{uid(3, 's % 10')}, {uid(3, '(s + 1) % 10')} "
        f"FROM generate_series(1, {nt}) AS s, generate_series(0, 1) AS v"
    )


POPULATE = populate_statements(BIG)
ADD_ROWS = add_rows_statement(BIG)


def populate(conn: psycopg.Connection[Any], with_rows: bool = True, sc: Scale = BIG) -> None:
    """Fill a deployed database (and add the images_to_be_deleted rows if the table exists).

    Also used by tests/test_feature_scale.py (1,000,000 images).
    """
    for st in populate_statements(sc):
        conn.execute(st)
    if with_rows:
        conn.execute(add_rows_statement(sc))
    conn.commit()


def D(g: int) -> str:  # noqa: N802
    return f"00000001-0000-4000-8000-{g:012x}"


def I(n: int) -> str:  # noqa: N802, E743
    return f"00000002-0000-4000-8000-{n:012x}"


def SD(k: int) -> str:  # noqa: N802
    return f"00000003-0000-4000-8000-{k:012x}"


RELEASE_1_DUMP = ROOT / "tests" / "fixtures" / "release_1.sql"


def release_1_sql(dst: Path) -> SqlTree:
    """Release 1's SQL, exactly as tests/fixtures/make_release_1.py builds it."""
    spec = importlib.util.spec_from_file_location(
        "make_release_1", ROOT / "tests" / "fixtures" / "make_release_1.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.release_1_tree(dst)


def install_prefeature(conn: psycopg.Connection[Any], tree: SqlTree) -> int:
    """Release 1's views and functions in schema prefeature, over the public tables."""
    n = 0
    with conn.transaction():
        conn.execute("CREATE SCHEMA prefeature")
        conn.execute("SET LOCAL search_path = prefeature, public")
        conn.execute("SET LOCAL check_function_bodies = on")
        for f in tree.procedures:  # views first (*_views.sql), then *_sp.sql
            text = f.text.replace("SET search_path = public, pg_temp",
                                  "SET search_path = prefeature, public, pg_temp")
            for st in split_statements(text):
                conn.execute(st.text)
                n += 1
    # Every pre-feature view must be in prefeature, not resolved to public's extended one.
    wrong = conn.execute(
        "SELECT count(*) FROM pg_proc p JOIN pg_type t ON t.oid = p.prorettype "
        "JOIN pg_class c ON c.oid = t.typrelid WHERE p.pronamespace = 'prefeature'::regnamespace "
        "AND c.relkind = 'v' AND c.relnamespace = 'public'::regnamespace").fetchone()[0]
    assert wrong == 0, f"{wrong} prefeature functions return a public view's row type"
    return n


# --- the lookups --------------------------------------------------------------------------

KINDS = ("ordinary", "moved_source", "temporary")


def disk_of_kind(rng: random.Random, sc: Scale, kind: str) -> int:
    if kind == "ordinary":
        return rng.randint(sc.n_tmp + 1, sc.n_disks)
    if kind == "moved_source":  # its two volumes each have a leftover (a temporary image)
        return rng.randint(1, sc.n_tmp)
    return rng.randint(sc.n_disks + 1, sc.n_disks + sc.n_tmp)  # a To_Be_Deleted disk


Params = Callable[[random.Random, Scale, str], tuple[Any, ...]]
# name -> (call with {s} for the schema, params(rng, scale, kind), the view query behind it)
LOOKUPS: dict[str, tuple[str, Params, str | None]] = {
    "GetImageByImageGuid": (
        "SELECT * FROM {s}.GetImageByImageGuid(%s)",
        lambda r, sc, k: (I(disk_of_kind(r, sc, k) * 2 + r.randint(0, 1)),),
        "SELECT * FROM {s}.images_storage_domain_view WHERE image_guid = %s"),
    "GetSnapshotsByImageGroupId": (
        "SELECT * FROM {s}.GetSnapshotsByImageGroupId(%s)",
        lambda r, sc, k: (D(disk_of_kind(r, sc, k)),),
        "SELECT * FROM {s}.images_storage_domain_view WHERE image_group_id = %s"),
    "GetVmImageByImageGuid": (
        "SELECT * FROM {s}.GetVmImageByImageGuid(%s)",
        lambda r, sc, k: (I(disk_of_kind(r, sc, k) * 2 + 1),),
        "SELECT * FROM {s}.vm_images_view WHERE image_guid = %s"),
    # Before the feature these three scanned every volume (a plan that the feature's
    # rewrite of them fixed); they are reported, with no goal.
    "GetDiskByDiskId": (
        "SELECT * FROM {s}.GetDiskByDiskId(%s, NULL, FALSE)",
        lambda r, sc, k: (D(disk_of_kind(r, sc, k)),), None),
    "GetSnapshotByLeafGuid": (
        "SELECT * FROM {s}.GetSnapshotByLeafGuid(%s)",
        lambda r, sc, k: (I(disk_of_kind(r, sc, k) * 2 + 1),), None),
    "GetAncestralImageByImageGuid": (
        "SELECT * FROM {s}.GetAncestralImageByImageGuid(%s, NULL, FALSE)",
        lambda r, sc, k: (I(disk_of_kind(r, sc, k) * 2 + 1),), None),
    # Listings: ~5% of the volumes (one domain's active ones) and every disk; counted
    # server-side (the function still builds every row).
    "GetAllForStorageDomain": (
        "SELECT count(*) FROM {s}.GetAllForStorageDomain(%s)",
        lambda r, sc, k: (SD(r.randint(0, 9)),), None),
    "GetAllFromDisks": (
        "SELECT count(*) FROM {s}.GetAllFromDisks(NULL, FALSE)",
        lambda r, sc, k: (), None),
}
GOAL = ("GetImageByImageGuid", "GetSnapshotsByImageGroupId", "GetVmImageByImageGuid",
        "GetAllForStorageDomain", "GetAllFromDisks")
POINT = [n for n in LOOKUPS if not n.startswith("GetAll")]


class Timer:
    """Calls on one connection, recording wall time and the backend's CPU time."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    def call(self, q: str, p: tuple[Any, ...]) -> tuple[float, float]:
        c0 = cpu_ns(self.pid)
        t0 = time.perf_counter()
        self.conn.execute(q, p, prepare=True).fetchall()
        wall = time.perf_counter() - t0
        return wall, (cpu_ns(self.pid) - c0) / 1e9

    def batch(self, q: str, ps: list[tuple[Any, ...]], pipelined: bool) -> tuple[float, float]:
        """Wall and server CPU seconds PER CALL over len(ps) calls of q."""
        c0 = cpu_ns(self.pid)
        t0 = time.perf_counter()
        cur = self.conn.cursor()
        if pipelined:
            with self.conn.pipeline():
                for p in ps:
                    cur.execute(q, p, prepare=True)
        else:
            for p in ps:
                cur.execute(q, p, prepare=True)
                cur.fetchall()
        wall = time.perf_counter() - t0
        return wall / len(ps), (cpu_ns(self.pid) - c0) / 1e9 / len(ps)


def spread(pairs: list[tuple[float, float]]) -> dict[str, float]:
    rs = [b / a for a, b in pairs if a > 0]
    return {"ratio_p25": round(pct(rs, 0.25), 4), "ratio_median": round(statistics.median(rs), 4),
            "ratio_p75": round(pct(rs, 0.75), 4)}


def batched(timer: Timer, name: str, sc: Scale, rng: random.Random) -> dict[str, Any]:
    """A point lookup, pre-feature vs extended, in interleaved batches (docstring, 4)."""
    template, params, _ = LOOKUPS[name]
    qs = (template.format(s="prefeature"), template.format(s="public"))
    kinds = iter(KINDS * (BATCH * MAX_ROUNDS))

    def draw() -> list[tuple[Any, ...]]:
        return [params(rng, sc, next(kinds)) for _ in range(BATCH)]

    for _ in range(2):  # warm-up: plans cached, custom/generic choice made, pages read
        ps = draw()
        for q in qs:
            timer.batch(q, ps[:20], False)
            timer.batch(q, ps, True)
    pipe: list[tuple[tuple[float, float], tuple[float, float]]] = []  # (pre, ext) (wall, cpu)
    trip: list[tuple[tuple[float, float], tuple[float, float]]] = []
    t_start = time.perf_counter()
    while len(pipe) < MIN_BATCH_ROUNDS or time.perf_counter() - t_start < BUDGET_S:
        ps = draw()
        order = (0, 1) if len(pipe) % 2 == 0 else (1, 0)
        for pipelined, out in ((True, pipe), (False, trip)):
            got = {i: timer.batch(qs[i], ps, pipelined) for i in order}
            out.append((got[0], got[1]))
        if len(pipe) >= MAX_ROUNDS:
            break
    pre_cpu = statistics.median(a[1] for a, _ in pipe) * 1e3
    ext_cpu = statistics.median(b[1] for _, b in pipe) * 1e3
    pre_ms = statistics.median(a[0] for a, _ in trip) * 1e3
    ext_ms = statistics.median(b[0] for _, b in trip) * 1e3
    trip_pre_cpu = statistics.median(a[1] for a, _ in trip) * 1e3
    trip_ext_cpu = statistics.median(b[1] for _, b in trip) * 1e3
    trip_spread = spread([(a[1], b[1]) for a, b in trip])
    log(f"  {sc.label} {name}: server CPU per call, pipelined {pre_cpu:.4f} -> {ext_cpu:.4f} ms "
        f"(x{ext_cpu / pre_cpu:.3f}); round trips {trip_pre_cpu:.4f} -> {trip_ext_cpu:.4f} ms "
        f"(x{trip_ext_cpu / trip_pre_cpu:.3f}), wall {pre_ms:.3f} -> {ext_ms:.3f} ms; "
        f"{len(pipe)} rounds of {BATCH} calls")
    goal = (("<=", GOAL_MAX_RATIO) if name in GOAL and sc == BIG else None)
    return figure(
        f"lookup {name} @{sc.label}", ext_cpu, "ms CPU", pre_cpu,
        baseline_what="the same lookup before the feature (release 1), same database",
        goal=goal, pairs=[(a[1], b[1]) for a, b in pipe], group="lookups",
        extra={"images": sc.images, "lookup": name, "calls_per_round": BATCH,
               "measure": "server CPU per call, pipelined batches",
               "wall_ms": round(ext_ms, 4), "wall_baseline_ms": round(pre_ms, 4),
               "wall_ratio": round(ext_ms / pre_ms, 4),
               "round_trip_cpu_ms": round(trip_ext_cpu, 4),
               "round_trip_cpu_baseline_ms": round(trip_pre_cpu, 4),
               "round_trip_cpu_ratio": round(trip_ext_cpu / trip_pre_cpu, 4),
               "round_trip_cpu_spread": trip_spread})


def interleaved(timer: Timer, name: str, sc: Scale, rng: random.Random) -> dict[str, Any]:
    template, params, _ = LOOKUPS[name]
    pre_q, ext_q = template.format(s="prefeature"), template.format(s="public")
    kinds = iter(KINDS * (MAX_ROUNDS + 10))
    p = params(rng, sc, next(kinds))
    a0, b0 = timer.call(pre_q, p), timer.call(ext_q, p)
    heavy = max(a0[0], b0[0]) > HEAVY_S
    for _ in range(0 if heavy else 5):
        p = params(rng, sc, next(kinds))
        timer.call(pre_q, p)
        timer.call(ext_q, p)
    pre: list[tuple[float, float]] = []
    ext: list[tuple[float, float]] = []
    budget = BUDGET_S * (2.5 if heavy else 1.0)
    min_rounds = 2 if heavy else 30
    if heavy and name not in GOAL and a0[0] > ONE_ROUND_S:
        # A pre-feature full scan of seconds, no goal: its first calls are the one round.
        pre, ext, min_rounds = [a0], [b0], 0
    t_start = time.perf_counter()
    while min_rounds:
        p = params(rng, sc, next(kinds))
        if len(pre) % 2 == 0:
            a = timer.call(pre_q, p)
            b = timer.call(ext_q, p)
        else:
            b = timer.call(ext_q, p)
            a = timer.call(pre_q, p)
        pre.append(a)
        ext.append(b)
        elapsed = time.perf_counter() - t_start
        if len(pre) >= MAX_ROUNDS or (len(pre) >= min_rounds and elapsed > budget):
            break
        if heavy and len(pre) >= min_rounds and elapsed + 2 * (a[0] + b[0]) > budget:
            break
    pre_ms = statistics.median(x[0] for x in pre) * 1e3
    ext_ms = statistics.median(x[0] for x in ext) * 1e3
    pre_cpu = statistics.median(x[1] for x in pre) * 1e3
    ext_cpu = statistics.median(x[1] for x in ext) * 1e3
    log(f"  {sc.label} {name}: {pre_ms:.3f} -> {ext_ms:.3f} ms (x{ext_ms / pre_ms:.3f}; server CPU "
        f"{pre_cpu:.3f} -> {ext_cpu:.3f} ms, x{ext_cpu / pre_cpu:.3f}; {len(pre)} rounds)")
    goal = (("<=", GOAL_MAX_RATIO) if name in GOAL and sc == BIG else None)
    # Listings run without parallel workers (set by the caller), so that the backend's CPU
    # time is all the work: on 2 shared cores their wall time varies by +-20% between calls.
    value, baseline, unit, k = ext_cpu, pre_cpu, "ms CPU", 1
    return figure(
        f"lookup {name} @{sc.label}", value, unit, baseline,
        baseline_what="the same lookup before the feature (release 1), same database",
        goal=goal, pairs=[(a[k], b[k]) for a, b in zip(pre, ext)], group="lookups",
        extra={"images": sc.images, "lookup": name,
               "wall_ms": round(ext_ms, 4), "wall_baseline_ms": round(pre_ms, 4),
               "wall_ratio": round(ext_ms / pre_ms, 4),
               "server_cpu_ms": round(ext_cpu, 4), "server_cpu_baseline_ms": round(pre_cpu, 4)})


MATCH = {
    "IsSourceImageOnSourceStorage": "SELECT IsSourceImageOnSourceStorage(%s)",
    "GetSourceImageOnSourceStorage": "SELECT * FROM GetSourceImageOnSourceStorage(%s)",
    "GetImageToBeDeletedRemovalPlan": "SELECT * FROM GetImageToBeDeletedRemovalPlan(%s)",
}
PK_LOOKUP = "SELECT * FROM GetImageByImageId(%s)"


def storage_match(timer: Timer, sc: Scale, rng: random.Random) -> list[dict[str, Any]]:
    """The storage-match functions on temporary images, interleaved with a primary-key lookup
    of images (GetImageByImageId) on the same ids: pipelined batches, the order rotating."""
    def temps() -> list[tuple[str]]:
        return [(I((sc.n_disks + rng.randint(1, sc.n_tmp)) * 2 + rng.randint(0, 1)),)
                for _ in range(BATCH)]
    names = [*MATCH, "pk"]
    qs = {**MATCH, "pk": PK_LOOKUP}
    for _ in range(2):
        ps = temps()
        for n in names:
            timer.batch(qs[n], ps, True)
    times: dict[str, list[float]] = {n: [] for n in names}  # server CPU seconds per call
    trips: dict[str, list[float]] = {n: [] for n in names}  # the same, one round trip a call
    t_start = time.perf_counter()
    while len(times["pk"]) < MAX_ROUNDS and (
            len(times["pk"]) < MIN_BATCH_ROUNDS or time.perf_counter() - t_start < BUDGET_S):
        ps = temps()
        k = len(times["pk"]) % len(names)
        for n in names[k:] + names[:k]:
            times[n].append(timer.batch(qs[n], ps, True)[1])
        for n in names[k:] + names[:k]:
            trips[n].append(timer.batch(qs[n], ps[:BATCH // 4], False)[1])
    ref = statistics.median(times["pk"]) * 1e3
    trip_ref = statistics.median(trips["pk"]) * 1e3
    out = []
    for n in MATCH:
        v = statistics.median(times[n]) * 1e3
        trip_v = statistics.median(trips[n]) * 1e3
        out.append(figure(
            f"storage match {n} @{sc.label}", v, "ms CPU", ref,
            baseline_what="GetImageByImageId (primary-key lookup of images), same ids",
            goal=("<=", STORAGE_MATCH_GOAL) if sc == BIG else None,
            pairs=list(zip(times["pk"], times[n])), group="storage_match",
            extra={"images": sc.images, "lookup": n, "calls_per_round": BATCH,
                   "measure": "server CPU per call, pipelined batches",
                   "round_trip_cpu_ms": round(trip_v, 4),
                   "round_trip_cpu_baseline_ms": round(trip_ref, 4),
                   "round_trip_cpu_ratio": round(trip_v / trip_ref, 4),
                   "round_trip_cpu_spread": spread(list(zip(trips["pk"], trips[n])))}))
        log(f"  {sc.label} {n}: {v:.4f} ms vs primary key {ref:.4f} ms (x{v / ref:.3f}; "
            f"one round trip a call: {trip_v:.4f} vs {trip_ref:.4f} ms, x{trip_v / trip_ref:.3f}; "
            f"{len(times['pk'])} rounds of {BATCH} calls)")
    return out


WRITE_DISKS = 12  # fresh disks per side and round of the write cost (each moved once)
WRITE_ROUNDS = 16
LINKS_TRIGGER = "trg_images_to_be_deleted_image_move_links"


def write_cost(conn: psycopg.Connection[Any], timer: Timer, sc: Scale) -> list[dict[str, Any]]:
    """What keeping image_move_links costs a move's writes (``--write-cost``, run last: it
    leaves the links out of step): phase 1 (CreateTemporaryDiskForMove) and
    RemoveTemporaryDisk of a compensated move (rows only), with the trigger on images_to_be_deleted
    enabled vs disabled, interleaved by round (the first side alternating), each call on a
    disk no move touched before (an ordinary disk: two volumes). Server CPU per call."""
    disks = iter(range(sc.n_tmp + 1, sc.n_disks + 1))
    phase1 = "SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)"
    compensate = "SELECT MarkTemporaryDiskIllegal(%s, v_unlock_original => TRUE)"
    remove = "SELECT RemoveTemporaryDisk(%s)"
    per: dict[tuple[bool, str], list[float]] = {}

    def side(on: bool) -> dict[str, float]:
        conn.execute(f"ALTER TABLE images_to_be_deleted {'ENABLE' if on else 'DISABLE'} "
                     f"TRIGGER {LINKS_TRIGGER}")
        got = {"phase1": 0.0, "remove": 0.0}
        for _ in range(WRITE_DISKS):
            g = next(disks)
            args = (D(g), SD(g % 10), SD((g + 3) % 10))
            c0 = cpu_ns(timer.pid)
            tmp = conn.execute(phase1, args, prepare=True).fetchall()[0][0]
            got["phase1"] += (cpu_ns(timer.pid) - c0) / 1e9
            conn.execute(compensate, (tmp,), prepare=True).fetchall()
            c0 = cpu_ns(timer.pid)
            conn.execute(remove, (tmp,), prepare=True).fetchall()
            got["remove"] += (cpu_ns(timer.pid) - c0) / 1e9
        return {k: v / WRITE_DISKS for k, v in got.items()}

    side(True)  # warm-up: plans cached on both sides
    side(False)
    for r in range(WRITE_ROUNDS):
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            for k, v in side(on).items():
                per.setdefault((on, k), []).append(v)
    conn.execute(f"ALTER TABLE images_to_be_deleted ENABLE TRIGGER {LINKS_TRIGGER}")
    out = []
    for k, name in (("phase1", "CreateTemporaryDiskForMove"), ("remove", "RemoveTemporaryDisk")):
        without, with_ = per[(False, k)], per[(True, k)]
        v, b = statistics.median(with_) * 1e3, statistics.median(without) * 1e3
        log(f"  {sc.label} {name}: {b:.4f} -> {v:.4f} ms CPU with the links trigger "
            f"(x{v / b:.3f}; {WRITE_ROUNDS} rounds of {WRITE_DISKS} two-volume disks)")
        out.append(figure(
            f"links trigger {name} @{sc.label}", v, "ms CPU", b,
            baseline_what="the same call with the image_move_links trigger disabled",
            pairs=list(zip(without, with_)), group="lookups",
            extra={"images": sc.images, "calls_per_round": WRITE_DISKS,
                   "measure": "server CPU per call"}))
    return out


def explain(conn: psycopg.Connection[Any], name: str, sc: Scale, rng: random.Random,
            kind: str) -> None:
    _, params, q = LOOKUPS[name]
    if q is None:
        return
    p = params(rng, sc, kind)
    for schema in ("prefeature", "public"):
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + q.format(s=schema), p).fetchall()
        log(f"--- EXPLAIN {name} ({schema}, {kind}) {p}")
        log("\n".join(r[0] for r in rows))


def prepare(cluster: ThrowawayCluster, sc: Scale, release_1: SqlTree) -> tuple[str, dict[str, float]]:
    """A database of ``sc.images`` images, upgraded from release 1; deploy timings."""
    db = f"bench_{sc.images}"
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    dsn = cluster.dsn(db)
    t: dict[str, float] = {}
    # Release 1 as it shipped (the frozen dump the upgrade tests load, with its few rows),
    # after the package's roles, which its grants name.
    for f in (ROOT / "sql" / "roles.sql", RELEASE_1_DUMP):
        subprocess.run([str(cluster.binaries.program("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                        "-f", str(f), "-d", dsn], check=True, capture_output=True)
    with psycopg.connect(dsn) as conn:
        t0 = time.perf_counter()
        populate(conn, with_rows=False, sc=sc)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.autocommit = False
        t["populate_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        deploy(conn)  # the upgrade: pending scripts, every view and function re-created
        t["upgrade_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        deploy(conn)  # nothing pending: a no-op redeploy
        t["redeploy_s"] = time.perf_counter() - t0
        conn.execute(add_rows_statement(sc))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.autocommit = False
        install_prefeature(conn, release_1)
    log(f"{sc.label}: populated in {t['populate_s']:.1f} s, upgrade {t['upgrade_s']:.3f} s, "
        f"no-op redeploy {t['redeploy_s']:.3f} s")
    return dsn, t


def main() -> None:
    t_bench = time.perf_counter()
    rng = random.Random(20261126)
    sizes = list(SIZES)
    wanted = os.environ.get("BENCH_SIZES", "")
    if "--sizes" in sys.argv:
        wanted = sys.argv[sys.argv.index("--sizes") + 1]
    if wanted:
        sizes = [Scale(n) for n in sorted({int(x) for x in wanted.split(",")})]
    figures: list[dict[str, Any]] = []
    deploys: dict[str, dict[str, float]] = {}
    load0 = loadavg()
    with ThrowawayCluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        release_1 = release_1_sql(Path(tmp) / "sql")
        dsns = {}
        for sc in sizes:
            dsns[sc], deploys[sc.label] = prepare(cluster, sc, release_1)
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            shared_buffers = admin.execute("SHOW shared_buffers").fetchone()[0]
        for sc in sizes:
            with psycopg.connect(dsns[sc], autocommit=True) as conn:
                conn.execute("SET jit = off")
                timer = Timer(conn)
                for name in LOOKUPS:
                    if name in GOAL and name in POINT:
                        figures.append(batched(timer, name, sc, rng))
                    else:
                        serial = name.startswith("GetAll")
                        if serial:
                            conn.execute("SET max_parallel_workers_per_gather = 0")
                        figures.append(interleaved(timer, name, sc, rng))
                        if serial:
                            conn.execute("RESET max_parallel_workers_per_gather")
                figures += storage_match(timer, sc, rng)
                if "--write-cost" in sys.argv and sc == sizes[-1]:
                    figures += write_cost(conn, timer, sc)
                if "--explain" in sys.argv and sc == sizes[-1]:
                    for name in POINT:
                        for kind in ("ordinary", "moved_source"):
                            explain(conn, name, sc, rng, kind)
    small, big = sizes[0], sizes[-1]
    if big != small:
        figures.append(figure(
            f"deploy upgrade of release 1 @{big.label}", deploys[big.label]["upgrade_s"], "s",
            deploys[small.label]["upgrade_s"],
            baseline_what=f"the same upgrade of a release-1 database of {small.label} images",
            group="deploy", note="the feature's upgrade scripts rewrite no existing row",
            extra={"images": big.images}))
    figures.append(figure(
        f"deploy no-op redeploy @{big.label}", deploys[big.label]["redeploy_s"], "s",
        deploys[big.label]["upgrade_s"], baseline_what="the upgrade of the same database",
        goal=("<", 0.5), goal_on="value", group="deploy", extra={"images": big.images}))
    emit("lookups_at_scale", figures,
         series={"sizes": [s.images for s in sizes]},
         shared_buffers=shared_buffers, deploys=deploys,
         loadavg_start=load0, loadavg_end=loadavg(),
         wall_s=round(time.perf_counter() - t_bench, 1))


if __name__ == "__main__":
    main()
