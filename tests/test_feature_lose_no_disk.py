"""Three ways the phase functions could lose a disk, each as a user would meet it.

1. Compensation racing phase 3, or repeated for an old move while a second move runs.
2. The storage match and the removal plan disagreeing after a snapshot merge.
3. A failed move's partial copy on the destination recorded nowhere.
"""

from __future__ import annotations

import psycopg
from feature_rows import LOCKED, OK, make_domain, move_phase1, refused, setup, snapshot
from psycopg.rows import dict_row
from test_feature_races import prepare, race


def one(db, query, params=()):
    return db.execute(query, params).fetchone()


def test_1_compensation_racing_phase3_is_refused_and_the_disk_stays_on_the_destination(
    new_db,
) -> None:
    dsn = new_db()
    ctx = prepare(dsn, "in_flight")
    # A runs phase 3 and holds its transaction open; B compensates; A commits.
    phase3, compensation, waited = race(dsn, ctx, "phase3", "compensate")
    assert (phase3, compensation, waited) == (2, "MD003", True)
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        disk = conn.execute(
            "SELECT DISTINCT i.imagestatus, m.storage_domain_id FROM images i "
            "JOIN image_storage_domain_map m ON m.image_id = i.image_guid "
            "WHERE i.image_group_id = %s", (ctx.disk,)).fetchall()
        assert disk == [{"imagestatus": OK, "storage_domain_id": ctx.dest}]
        # The temporary disk still stands for the copy on S, which the end with success deletes.
        tmp = conn.execute("SELECT DISTINCT imagestatus FROM images WHERE image_group_id = %s",
                           (ctx.tmp,)).fetchall()
        assert tmp == [{"imagestatus": LOCKED}]
        # Nothing tells anyone to delete on D, where the only copy now lives.
        plan = conn.execute(
            "SELECT p.removal, p.storage_domain_id FROM images_to_be_deleted t, "
            "GetImageToBeDeletedRemovalPlan(t.image_id) p "
            "WHERE t.src_image_group_id = %s", (ctx.disk,)).fetchall()
        assert {(r["removal"], r["storage_domain_id"]) for r in plan} == {("STORAGE_AND_DB", ctx.src)}


def test_1_an_old_compensation_does_not_unlock_a_second_move(db) -> None:
    s = setup(db)
    d2 = make_domain(db, s.pool, name="D2")
    old_tmp, _ = move_phase1(db, s)
    assert one(db, "SELECT MarkTemporaryDiskIllegal(%s, TRUE) AS n", (old_tmp,))["n"] == 2
    db.execute("SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)", (s.disk.disk_id, s.src, d2))
    before = snapshot(db)
    # The old move's compensation, repeated (a retry after a crash): "already happened".
    assert one(db, "SELECT MarkTemporaryDiskIllegal(%s, v_unlock_original => TRUE) AS n",
               (old_tmp,))["n"] == 0
    assert snapshot(db) == before
    statuses = {r["imagestatus"] for r in db.execute(
        "SELECT imagestatus FROM images WHERE image_group_id = %s", (s.disk.disk_id,))}
    assert statuses == {LOCKED}


def test_2_a_snapshot_merge_after_a_failed_move_keeps_the_source_live(db) -> None:
    s = setup(db, volumes=2)
    tmp, mapping = move_phase1(db, s)
    db.execute("SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))  # the move failed
    # A live merge folds the top volume into its parent: that source volume is gone.
    merged = s.disk.images[1]
    for table, column in (("image_storage_domain_map", "image_id"),
                          ("disk_image_dynamic", "image_id"), ("images", "image_guid")):
        db.execute(f"DELETE FROM {table} WHERE {column} = %s", (merged,))
    for temp in mapping.values():
        # Every answer says the same: S holds the live disk; only rows may go.
        assert one(db, "SELECT IsSourceImageOnSourceStorage(%s) AS b", (temp,))["b"] is True
        row = one(db, "SELECT * FROM GetSourceImageOnSourceStorage(%s)", (temp,))
        assert (row["src_image_group_id"], row["src_storage"]) == (s.disk.disk_id, s.src)
        plan = one(db, "SELECT * FROM GetImageToBeDeletedRemovalPlan(%s)", (temp,))
        assert plan["removal"] == "DB_ONLY" and s.src not in plan["delete_on_storage_domain_ids"]
    # The DBA is not told that S holds a leftover to delete, nor is it charged as one.
    assert db.execute("SELECT * FROM VerifyAll()").fetchall() == []
    usage = one(db, "SELECT * FROM storage_domain_usage_view WHERE storage_domain_id = %s", (s.src,))
    assert usage["leftover_bytes"] == 0 and usage["volumes"] == 1
    all_tmp = one(db, "SELECT original_on_src_storage FROM GetAllTemporaryDisks()")
    assert all_tmp["original_on_src_storage"] is True
    # Removal without "storage deleted" goes through (rows only) and the disk is intact on S.
    assert one(db, "SELECT RemoveTemporaryDisk(%s) AS n", (tmp,))["n"] == 2
    assert one(db, "SELECT count(*) AS n FROM image_storage_domain_map WHERE image_id = %s "
               "AND storage_domain_id = %s", (s.disk.images[0], s.src))["n"] == 1


def test_3_a_failed_moves_partial_copy_is_recorded_until_the_agent_confirms(db) -> None:
    s = setup(db, wipe_after_delete=True)
    tmp, mapping = move_phase1(db, s)
    db.execute("SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))
    rows = db.execute("SELECT * FROM GetAllImageGroupsToBeDeleted()").fetchall()
    assert [(r["image_group_id"], r["storage_domain_id"], r["storage_pool_id"], r["reason"],
             r["wipe_after_delete"], r["attempts"], r["live_on_storage_domain"]) for r in rows] == [
        (s.disk.disk_id, s.dest, s.pool, "MOVE_FAILED", True, 0, False)]
    # The removal plan names D as well: the rows of the temporary disk are not the only record.
    plan = one(db, "SELECT * FROM GetImageToBeDeletedRemovalPlan(%s)",
               (mapping[s.disk.images[0]],))
    assert plan["removal"] == "DB_ONLY" and plan["delete_on_storage_domain_ids"] == [s.dest]
    db.execute("SELECT RemoveTemporaryDisk(%s)", (tmp,))
    # The rows are gone; the deletion on D is not forgotten. The agent fails twice, then succeeds.
    assert one(db, "SELECT RecordImageGroupDeletionFailure(%s, %s, 'code 358') AS n",
               (s.disk.disk_id, s.dest))["n"] == 1
    assert one(db, "SELECT RecordImageGroupDeletionFailure(%s, %s, 'timeout') AS n",
               (s.disk.disk_id, s.dest))["n"] == 2
    row = one(db, "SELECT * FROM GetImageGroupsToBeDeletedByStorageDomainId(%s)", (s.dest,))
    assert (row["attempts"], row["last_error"]) == (2, "timeout") and row["last_attempt"]
    # Until then, no new move of the disk may land on D.
    assert "still to be deleted" in refused(
        db, "MD003", "SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)",
        (s.disk.disk_id, s.src, s.dest))
    assert one(db, "SELECT ConfirmImageGroupDeleted(%s, %s) AS n", (s.disk.disk_id, s.dest))["n"] == 1
    assert db.execute("SELECT * FROM GetAllImageGroupsToBeDeleted()").fetchall() == []
    # A repeat says "already confirmed"; a failure recorded late finds nothing pending.
    assert one(db, "SELECT ConfirmImageGroupDeleted(%s, %s) AS n", (s.disk.disk_id, s.dest))["n"] == 0
    assert one(db, "SELECT RecordImageGroupDeletionFailure(%s, %s) AS n",
               (s.disk.disk_id, s.dest))["n"] == 0


def test_a_pending_deletion_where_the_disk_is_live_is_never_confirmed_and_is_an_error(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    db.execute("SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))
    # A careless hand maps the disk onto D while its partial copy there is pending deletion.
    db.execute("UPDATE image_storage_domain_map SET storage_domain_id = %s WHERE image_id = %s",
               (s.dest, s.disk.images[0]))
    row = one(db, "SELECT live_on_storage_domain FROM GetAllImageGroupsToBeDeleted()")
    assert row["live_on_storage_domain"] is True
    assert "live on storage domain" in refused(
        db, "MD003", "SELECT ConfirmImageGroupDeleted(%s, %s)", (s.disk.disk_id, s.dest))
    checks = {(r["check_name"], r["entity_id"]) for r in db.execute("SELECT * FROM VerifyAll()")}
    assert ("deletion_of_live_disk", s.disk.disk_id) in checks
    plan = db.execute("SELECT p.delete_on_storage_domain_ids AS d FROM images_to_be_deleted t, "
                      "GetImageToBeDeletedRemovalPlan(t.image_id) p").fetchall()
    assert all(s.dest not in r["d"] for r in plan)


def test_a_source_leftover_is_confirmed_by_removing_its_temporary_disk(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    db.execute("SELECT UpdateImageGroupStorageDomain(%s, %s, %s)", (s.disk.disk_id, s.src, s.dest))
    db.execute("SELECT MarkTemporaryDiskIllegal(%s)", (tmp,))  # the agent refused to delete on S
    row = one(db, "SELECT * FROM GetAllImageGroupsToBeDeleted()")
    assert (row["storage_domain_id"], row["reason"], row["temporary_disk_id"]) == (
        s.src, "SOURCE_AFTER_MOVE", tmp)
    assert "RemoveTemporaryDisk" in refused(
        db, "MD003", "SELECT ConfirmImageGroupDeleted(%s, %s)", (s.disk.disk_id, s.src))
    db.execute("SELECT RemoveTemporaryDisk(%s, TRUE)", (tmp,))
    assert db.execute("SELECT * FROM GetAllImageGroupsToBeDeleted()").fetchall() == []


def test_old_pending_deletions_are_reported_with_their_last_error(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    db.execute("SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))
    db.execute("SELECT RemoveTemporaryDisk(%s)", (tmp,))
    db.execute("SELECT RecordImageGroupDeletionFailure(%s, %s, 'agent down')", (s.disk.disk_id, s.dest))
    assert db.execute("SELECT * FROM VerifyAll()").fetchall() == []
    db.execute("UPDATE image_groups_to_be_deleted SET _create_date = now() - interval '2 days'")
    rows = db.execute("SELECT * FROM VerifyAll()").fetchall()
    assert [(r["check_name"], r["entity_id"], r["severity"]) for r in rows] == [
        ("old_storage_deletion", s.disk.disk_id, "warning")]
    assert "1 failed attempt(s): agent down" in rows[0]["message"]
    assert db.execute("SELECT * FROM VerifyAll(v_leftover_age => interval '3 days')").fetchall() == []
