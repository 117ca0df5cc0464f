"""images_to_be_deleted: its constraints, and upgrade 0001 on a release-1 database."""

from __future__ import annotations

import subprocess
import tarfile
import time
from io import BytesIO
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from harness.deploy import catalog_snapshot, deploy
from harness.errors import DeployError
from harness.sqlfiles import SqlTree
from test_feature_rows import make_disk, new_id, setup

ROOT = Path(__file__).resolve().parents[1]
UPGRADE = "upgrade/0001_images_to_be_deleted.sql"


def release1_commit() -> str:
    """The engine schema as released before the feature: the 'Engine schema: complete'
    commit, else the last commit before the first 'Feature:' commit."""
    log = subprocess.run(
        ["git", "log", "--format=%H %s", "--reverse"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.splitlines()
    for line in log:
        sha, subject = line.split(" ", 1)
        if subject.startswith("Engine schema: complete"):
            return sha
    previous = None
    for line in log:
        sha, subject = line.split(" ", 1)
        if subject.startswith("Feature:"):
            assert previous
            return previous
        previous = sha
    raise AssertionError("no release-1 commit found")


def release1_tree(tmp_path: Path) -> SqlTree:
    archive = subprocess.run(
        ["git", "archive", "--format=tar", release1_commit(), "sql"], cwd=ROOT,
        capture_output=True, check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tmp_path / "release1")
    # The feature's own files were committed on the same branch before that commit: drop them.
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--name-only", "--format=", "--grep=^Feature:"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()
    for name in added:
        if name.startswith("sql/"):
            (tmp_path / "release1" / name).unlink(missing_ok=True)
    tree = SqlTree.load(tmp_path / "release1" / "sql")
    assert UPGRADE not in [f.name for f in tree.upgrades]
    return tree


def test_constraints_keep_the_table_consistent(db) -> None:
    s = setup(db)
    tmp, _ = (db.execute("SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)",
                         (s.disk.disk_id, s.src, s.dest)).fetchall(), None)
    temp_image = tmp[0]["temporary_image_id"]
    cases = [
        # no temporary image row
        ("23503", (new_id(), s.disk.images[0], s.disk.disk_id, s.src, s.dest)),
        # unknown domains
        ("23503", (s.disk.images[1], s.disk.images[0], s.disk.disk_id, new_id(), s.dest)),
        ("23503", (s.disk.images[1], s.disk.images[0], s.disk.disk_id, s.src, new_id())),
        # source = destination
        ("23514", (s.disk.images[1], s.disk.images[0], s.disk.disk_id, s.src, s.src)),
        # an image standing for itself
        ("23514", (s.disk.images[1], s.disk.images[1], s.disk.disk_id, s.src, s.dest)),
        # one row per temporary image
        ("23505", (temp_image, s.disk.images[0], s.disk.disk_id, s.src, s.dest)),
    ]
    for sqlstate, args in cases:
        with pytest.raises(psycopg.Error) as err, db.transaction():
            db.execute("SELECT InsertImageToBeDeleted(%s, %s, %s, %s, %s)", args)
        assert err.value.sqlstate == sqlstate, args
    # A temporary image cannot vanish under its row.
    with pytest.raises(psycopg.errors.ForeignKeyViolation), db.transaction():
        db.execute("DELETE FROM images WHERE image_guid = %s", (temp_image,))


def test_every_column_and_the_table_are_commented(db) -> None:
    rows = db.execute(
        "SELECT a.attname, col_description(a.attrelid, a.attnum) AS c FROM pg_attribute a "
        "WHERE a.attrelid = 'images_to_be_deleted'::regclass AND a.attnum > 0"
    ).fetchall()
    assert len(rows) == 6 and all(r["c"] for r in rows)
    assert db.execute("SELECT obj_description('images_to_be_deleted'::regclass, 'pg_class') AS c"
                      ).fetchone()["c"]


def test_upgrade_of_a_release1_database_keeps_rows_and_equals_a_fresh_install(
    new_db, template_db, tmp_path
) -> None:
    old = release1_tree(tmp_path)
    dsn = new_db(deployed=False)
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        assert deploy(conn, tree=old).mode == "fresh"
        with conn.transaction():
            s = setup(conn, volumes=3)
            make_disk(conn, s.dest, volumes=1, alias="other")
        before = {
            t: conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"]
            for t in ("images", "base_disks", "image_storage_domain_map", "disk_image_dynamic")
        }
        report = deploy(conn)
        assert report.mode == "upgrade" and report.upgrades_applied == [UPGRADE]
        after = {t: conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"] for t in before}
        assert after == before
        upgraded = catalog_snapshot(conn)
        # The upgraded database runs the feature.
        conn.execute("SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)",
                     (s.disk.disk_id, s.src, s.dest))
        conn.rollback()
    fresh_dsn = new_db()
    with psycopg.connect(fresh_dsn, row_factory=dict_row) as conn:
        fresh = catalog_snapshot(conn)
    diff = sorted(k for k in fresh.keys() | upgraded.keys() if fresh.get(k) != upgraded.get(k))
    # schema_version.id gained a comment in sql/tables/0000 without an upgrade script (not this
    # feature's drift; reported): everything else must be equal.
    assert [k for k in diff if k != ("column", "schema_version.id")] == []


def test_upgrade_waits_for_a_busy_images_table_only_up_to_its_lock_timeout(
    new_db, tmp_path
) -> None:
    old = release1_tree(tmp_path)
    dsn = new_db(deployed=False)
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        deploy(conn, tree=old)
        conn.commit()
        with conn.transaction():
            s = setup(conn)
    with psycopg.connect(dsn, row_factory=dict_row) as writer, \
            psycopg.connect(dsn, row_factory=dict_row) as upgrader:
        # An engine transaction that wrote to images and is still open.
        writer.execute("UPDATE images SET lastmodified = now() WHERE image_guid = %s",
                       (s.disk.images[0],))
        t0 = time.perf_counter()
        with pytest.raises(DeployError) as err:
            deploy(upgrader)
        waited = time.perf_counter() - t0
        assert err.value.details.get("sqlstate") == "55P03" or "lock timeout" in err.value.message
        assert waited < 10
        writer.rollback()
        assert deploy(upgrader).upgrades_applied == [UPGRADE]


def test_squawk_finds_no_unsafe_ddl_in_the_upgrade() -> None:
    import sys

    squawk = Path(sys.executable).parent / "squawk"
    res = subprocess.run([str(squawk), "--pg-version", "15", str(ROOT / "sql" / UPGRADE)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
