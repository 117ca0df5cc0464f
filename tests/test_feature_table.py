"""images_to_be_deleted: its constraints, and upgrade 0001 against a busy release-1 database."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from movedisk.deploy import deploy
from movedisk.errors import LockTimeout
from feature_rows import new_id, setup

ROOT = Path(__file__).resolve().parents[1]
UPGRADE = "upgrade/0001_images_to_be_deleted.sql"


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


def test_upgrade_waits_for_a_busy_images_table_only_up_to_its_lock_timeout(
    release_1_dsn: str,
) -> None:
    dsn = release_1_dsn
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        image = conn.execute(
            "SELECT image_guid FROM images WHERE image_group_id <> %s LIMIT 1",
            ("00000000-0000-0000-0000-000000000000",),
        ).fetchone()["image_guid"]
    with psycopg.connect(dsn, row_factory=dict_row) as writer, \
            psycopg.connect(dsn, row_factory=dict_row) as upgrader:
        # An engine transaction that wrote to images and is still open.
        writer.execute("UPDATE images SET lastmodified = now() WHERE image_guid = %s",
                       (image,))
        t0 = time.perf_counter()
        with pytest.raises(LockTimeout) as err:
            deploy(upgrader)
        waited = time.perf_counter() - t0
        # The error names the table waited for and the engine session holding it.
        assert "waiting for a lock on table images; held by pid" in err.value.message
        assert waited < 10
        writer.rollback()
        assert UPGRADE in deploy(upgrader).upgrades_applied
