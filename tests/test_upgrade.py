"""A database of the first release, upgraded, equals a fresh install and keeps every row.

tests/fixtures/release_1.sql is a pg_dump of a populated release-1 database (the
engine schema before the feature), frozen when release 1 was cut.
"""

from __future__ import annotations

from typing import Any

import psycopg
import results
from psycopg import sql
from psycopg.rows import dict_row

from movedisk.deploy import catalog_snapshot, deploy
from movedisk.sqlfiles import SqlTree

def table_rows(conn: psycopg.Connection[Any], columns: dict[str, list[str]]) -> dict[str, list]:
    """Every row of every table, restricted to the columns release 1 had, sorted."""
    out = {}
    for table, cols in columns.items():
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in cols),
            sql.Identifier(table),
        )
        out[table] = sorted(
            (tuple(r.values()) for r in conn.execute(query).fetchall()), key=repr
        )
    return out


def release_1_columns(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    rows = conn.execute(
        """
        SELECT c.relname AS t, array_agg(a.attname ORDER BY a.attnum) AS cols
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
             AND NOT a.attisdropped
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
        GROUP BY c.relname
        """
    ).fetchall()
    return {r["t"]: r["cols"] for r in rows}


def url(cluster: Any, dsn: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{cluster.port}/{dsn.rsplit('dbname=', 1)[1]}"


def test_release_1_upgrades_to_the_fresh_schema_keeping_every_row(
    release_1_dsn: str, new_db, pg_cluster
) -> None:
    fresh_dsn = new_db()
    old_diff = results.db(url(pg_cluster, release_1_dsn)).schemadiff_as_sql(
        results.db(url(pg_cluster, fresh_dsn)), with_privileges=True
    )
    assert "images_to_be_deleted" in old_diff  # the diff does see what release 1 lacks
    with psycopg.connect(release_1_dsn, row_factory=dict_row) as conn:
        columns = release_1_columns(conn)
        del columns["schema_version"]  # gains the upgrade rows, checked below
        before = table_rows(conn, columns)
        assert len(before["images"]) == 13 and len(before["async_tasks"]) == 2
        report = deploy(conn)
        after = table_rows(conn, columns)
        upgraded = catalog_snapshot(conn)
        recorded = conn.execute(
            "SELECT script, checksum FROM schema_version ORDER BY id"
        ).fetchall()
    tree = SqlTree.load()
    assert report.mode == "upgrade"
    assert report.upgrades_applied == [f.name for f in tree.upgrades]
    assert [(r["script"], r["checksum"]) for r in recorded] == [
        (f.name, f.checksum) for f in tree.upgrades
    ]
    assert after == before
    with psycopg.connect(fresh_dsn, row_factory=dict_row) as conn:
        fresh = catalog_snapshot(conn)
    differences = sorted(k for k in fresh.keys() | upgraded.keys() if fresh.get(k) != upgraded.get(k))
    assert differences == [], "\n".join(f"{k}\n {fresh.get(k)}\n {upgraded.get(k)}" for k in differences)
    # An independent schema diff (tables, views, functions, indexes, table grants).
    diff = results.db(url(pg_cluster, release_1_dsn)).schemadiff_as_sql(
        results.db(url(pg_cluster, fresh_dsn)), with_privileges=True
    )
    assert diff.strip() == ""


def test_release_1_database_reports_its_pending_upgrades(release_1_dsn: str) -> None:
    from movedisk.deploy import status

    with psycopg.connect(release_1_dsn, row_factory=dict_row) as conn:
        st = status(conn)
    assert st["installed"] and st["edited"] == [] and st["missing"] == []
    assert st["pending"] == [f.name for f in SqlTree.load().upgrades]


def test_upgrade_0002_records_the_deletions_release_1_left_to_temporary_disks(new_db) -> None:
    """A database at upgrade 0001 with a failed move and a refused source deletion gets both
    recorded as pending storage deletions; a finished move gets none."""
    from feature_rows import make_disk, setup

    dsn = new_db()
    with psycopg.connect(dsn, row_factory=dict_row, autocommit=True) as conn:
        failed, refused_, done = setup(conn), setup(conn), setup(conn)
        tmps = {}
        for name, s in (("failed", failed), ("refused", refused_), ("done", done)):
            tmps[name] = conn.execute(
                "SELECT DISTINCT temporary_disk_id FROM CreateTemporaryDiskForMove(%s, %s, %s)",
                (s.disk.disk_id, s.src, s.dest)).fetchone()["temporary_disk_id"]
        for s in (refused_, done):
            conn.execute("SELECT UpdateImageGroupStorageDomain(%s, %s, %s)",
                         (s.disk.disk_id, s.src, s.dest))
        make_disk(conn, failed.src, alias="bystander")
        # The state release 1 left: ILLEGAL temporary disks and no record of what to delete.
        conn.execute("UPDATE images SET imagestatus = 4 WHERE image_group_id = ANY(%s)",
                     ([tmps["failed"], tmps["refused"]],))
        conn.execute("UPDATE images SET imagestatus = 1 WHERE image_group_id = %s",
                     (failed.disk.disk_id,))
        conn.execute("DROP TABLE image_groups_to_be_deleted CASCADE")
        # At 0001: 0002 and every later script pending (each is written to re-run safely).
        conn.execute("DELETE FROM schema_version WHERE script >= %s",
                     ("upgrade/0002_image_groups_to_be_deleted.sql",))
    later = [f.name for f in SqlTree.load().upgrades if f.version >= "0002"]
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        report = deploy(conn)
        assert report.upgrades_applied == later
        assert later[0] == "upgrade/0002_image_groups_to_be_deleted.sql"
        rows = conn.execute("SELECT * FROM GetAllImageGroupsToBeDeleted()").fetchall()
    assert sorted((r["image_group_id"], r["storage_domain_id"], r["reason"], r["temporary_disk_id"],
                   r["storage_pool_id"]) for r in rows) == sorted([
        (failed.disk.disk_id, failed.dest, "MOVE_FAILED", tmps["failed"], failed.pool),
        (refused_.disk.disk_id, refused_.src, "SOURCE_AFTER_MOVE", tmps["refused"], refused_.pool),
    ])


def test_upgrade_0005_fills_the_move_links_from_images_to_be_deleted(new_db) -> None:
    """A database at upgrade 0004 with temporary disks (one source volume with two leftovers)
    gets image_move_links filled from images_to_be_deleted and its trigger: the lookups show the
    same temporary and leftover columns as before, VerifyImageMoveLinks finds nothing, and later
    writes keep the links in step."""
    from feature_rows import make_domain, setup

    dsn = new_db()
    with psycopg.connect(dsn, row_factory=dict_row, autocommit=True) as conn:
        s = setup(conn)
        d2 = make_domain(conn, s.pool, name="D2")
        tmps = []
        for dest in (s.dest, d2):  # two failed moves: each source volume has two leftovers
            tmp = conn.execute("SELECT DISTINCT temporary_disk_id FROM CreateTemporaryDiskForMove("
                               "%s, %s, %s)", (s.disk.disk_id, s.src, dest)).fetchone()
            conn.execute("SELECT MarkTemporaryDiskIllegal(%s, v_unlock_original => TRUE)",
                         (tmp["temporary_disk_id"],))
            tmps.append(tmp["temporary_disk_id"])
        view = ("SELECT image_guid, is_temporary, src_image_id, src_image_group_id, src_storage, "
                "dest_storage, ARRAY(SELECT x FROM unnest(leftover_image_ids) x ORDER BY x) AS ids, "
                "leftover_count FROM images_storage_domain_view ORDER BY image_guid")
        before = conn.execute(view).fetchall()
        assert sum(r["leftover_count"] for r in before) == 4
        # Back to 0004: no links table, no trigger, 0005 pending.
        conn.execute("DROP TRIGGER trg_images_to_be_deleted_image_move_links ON images_to_be_deleted")
        conn.execute("DROP VIEW images_storage_domain_view CASCADE")
        conn.execute("DROP TABLE image_move_links")
        conn.execute("DELETE FROM schema_version WHERE script = 'upgrade/0005_image_move_links.sql'")
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        report = deploy(conn)
        conn.commit()
        assert report.upgrades_applied == ["upgrade/0005_image_move_links.sql"]
        assert conn.execute(view).fetchall() == before
        assert conn.execute("SELECT * FROM VerifyAll()").fetchall() == []
        conn.execute("SELECT RemoveTemporaryDisk(%s)", (tmps[0],))
        assert sum(r["leftover_count"] for r in conn.execute(view).fetchall()) == 2
        assert conn.execute("SELECT * FROM VerifyImageMoveLinks()").fetchall() == []
