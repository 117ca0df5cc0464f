"""The move's phase helpers: phase 1 (validate + temporary disk), phase 3, ILLEGAL, removal."""

from __future__ import annotations

import psycopg
import pytest

from feature_rows import (
    ACTIVE,
    GB,
    ILLEGAL,
    LOCKED,
    MAINTENANCE,
    OK,
    make_disk,
    make_domain,
    make_pool,
    move_phase1,
    move_phase3,
    new_id,
    refused,
    setup,
    snapshot,
)


def statuses(db, disk_id):
    return [
        r["imagestatus"]
        for r in db.execute(
            "SELECT imagestatus FROM images WHERE image_group_id = %s ORDER BY image_guid", (disk_id,)
        )
    ]


def domains_of(db, disk_id):
    return {
        r["storage_domain_id"]
        for r in db.execute(
            "SELECT m.storage_domain_id FROM images i JOIN image_storage_domain_map m "
            "ON m.image_id = i.image_guid WHERE i.image_group_id = %s",
            (disk_id,),
        )
    }


def test_phase1_locks_the_original_and_mirrors_the_chain_on_the_source(db) -> None:
    s = setup(db, volumes=3, alias="web", wipe_after_delete=True)
    tmp, mapping = move_phase1(db, s)
    assert set(mapping) == set(s.disk.images) and tmp != s.disk.disk_id
    assert statuses(db, s.disk.disk_id) == [LOCKED] * 3
    assert statuses(db, tmp) == [LOCKED] * 3
    assert domains_of(db, tmp) == {s.src} and domains_of(db, s.disk.disk_id) == {s.src}
    disk = db.execute("SELECT * FROM base_disks WHERE disk_id = %s", (tmp,)).fetchone()
    assert disk["disk_alias"] == "web_To_Be_Deleted" and disk["wipe_after_delete"] is True
    # Parents remapped inside the chain; the base keeps its (empty) parent.
    orig = {r["image_guid"]: r for r in db.execute(
        "SELECT * FROM images WHERE image_group_id = %s", (s.disk.disk_id,))}
    for old, new in mapping.items():
        t = db.execute("SELECT * FROM images WHERE image_guid = %s", (new,)).fetchone()
        o = orig[old]
        assert t["parentid"] == mapping.get(o["parentid"], o["parentid"])
        assert (t["size"], t["active"], t["volume_format"]) == (o["size"], o["active"], o["volume_format"])
        a = db.execute("SELECT actual_size FROM disk_image_dynamic WHERE image_id = %s", (new,)).fetchone()
        assert a["actual_size"] == db.execute(
            "SELECT actual_size FROM disk_image_dynamic WHERE image_id = %s", (old,)).fetchone()["actual_size"]
    rows = db.execute("SELECT * FROM images_to_be_deleted ORDER BY image_id").fetchall()
    assert {(r["image_id"], r["src_image_id"]) for r in rows} == {(n, o) for o, n in mapping.items()}
    assert {(r["src_image_group_id"], r["src_storage"], r["dest_storage"]) for r in rows} == {
        (s.disk.disk_id, s.src, s.dest)
    }


def test_phase1_keeps_a_parent_outside_the_chain(db) -> None:
    pool = make_pool(db)
    src, dest = make_domain(db, pool), make_domain(db, pool)
    template = make_disk(db, src, volumes=1, alias="tpl")
    disk = make_disk(db, src, volumes=2, base_parent=template.images[0])
    rows = db.execute(
        "SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)", (disk.disk_id, src, dest)
    ).fetchall()
    mapping = {r["original_image_id"]: r["temporary_image_id"] for r in rows}
    base = db.execute("SELECT parentid, it_guid FROM images WHERE image_guid = %s",
                      (mapping[disk.images[0]],)).fetchone()
    assert base == {"parentid": template.images[0], "it_guid": template.images[0]}
    top = db.execute("SELECT parentid FROM images WHERE image_guid = %s",
                     (mapping[disk.images[1]],)).fetchone()
    assert top["parentid"] == mapping[disk.images[0]]


def test_phase1_takes_the_new_disk_id_when_given(db) -> None:
    s = setup(db)
    wanted = new_id()
    rows = db.execute(
        "SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s, v_new_image_group_id => %s)",
        (s.disk.disk_id, s.src, s.dest, wanted),
    ).fetchall()
    assert {r["temporary_disk_id"] for r in rows} == {wanted}


def test_phase1_repeated_with_the_chosen_id_answers_no_row_and_changes_nothing(db) -> None:
    s = setup(db)
    wanted = new_id()
    call = "SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s, v_new_image_group_id => %s)"
    assert len(db.execute(call, (s.disk.disk_id, s.src, s.dest, wanted)).fetchall()) == 2
    before = snapshot(db)
    assert db.execute(call, (s.disk.disk_id, s.src, s.dest, wanted)).fetchall() == []
    assert snapshot(db) == before
    # The same id for another move, or an id another disk has: refused.
    other = make_domain(db, s.pool)
    assert "already exists" in refused(db, "MD003", call, (s.disk.disk_id, s.src, other, wanted))
    fresh = setup(db)
    assert "already exists" in refused(
        db, "MD003", call, (fresh.disk.disk_id, fresh.src, fresh.dest, s.disk.disk_id))


CALL1 = "SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)"


def test_phase1_refuses_an_unknown_disk(db) -> None:
    s = setup(db)
    refused(db, "MD001", CALL1, (new_id(), s.src, s.dest))


def test_phase1_refuses_source_equal_to_destination(db) -> None:
    s = setup(db)
    refused(db, "MD002", CALL1, (s.disk.disk_id, s.src, s.src))


def test_phase1_refuses_a_disk_not_on_the_source(db) -> None:
    s = setup(db)
    other = make_domain(db, s.pool)
    refused(db, "MD002", CALL1, (s.disk.disk_id, other, s.dest))


def test_phase1_refuses_an_unknown_inactive_or_foreign_destination(db) -> None:
    s = setup(db)
    refused(db, "MD002", CALL1, (s.disk.disk_id, s.src, new_id()))
    down = make_domain(db, s.pool, status=MAINTENANCE)
    assert "not active" in refused(db, "MD002", CALL1, (s.disk.disk_id, s.src, down))
    foreign = make_domain(db, make_pool(db), status=ACTIVE)
    assert "not in storage pool" in refused(db, "MD002", CALL1, (s.disk.disk_id, s.src, foreign))
    floating = make_domain(db, None)
    refused(db, "MD002", CALL1, (s.disk.disk_id, s.src, floating))


def test_phase1_refuses_a_locked_or_illegal_disk(db) -> None:
    s = setup(db)
    db.execute("UPDATE images SET imagestatus = %s WHERE image_guid = %s", (LOCKED, s.disk.images[0]))
    assert "locked" in refused(db, "MD003", CALL1, (s.disk.disk_id, s.src, s.dest))
    db.execute("UPDATE images SET imagestatus = %s WHERE image_guid = %s", (ILLEGAL, s.disk.images[0]))
    assert "not OK" in refused(db, "MD003", CALL1, (s.disk.disk_id, s.src, s.dest))


def test_phase1_refuses_a_disk_already_moving(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    other = make_domain(db, s.pool)
    refused(db, "MD003", CALL1, (s.disk.disk_id, s.src, other))
    # Even once the original was unlocked by hand, the LOCKED temporary disk says it moves.
    db.execute("UPDATE images SET imagestatus = 1 WHERE image_group_id = %s", (s.disk.disk_id,))
    assert "already moving" in refused(db, "MD003", CALL1, (s.disk.disk_id, s.src, other))
    # A temporary disk itself is not movable.
    refused(db, "MD003", CALL1, (tmp, s.src, other))


def test_phase1_refuses_a_destination_without_room(db) -> None:
    pool = make_pool(db)
    src = make_domain(db, pool)
    small = make_domain(db, pool, available_gb=2)
    # Sparse volumes need their actual size (1 GB + 2 GB here): 3 GB > 2 GB.
    disk = make_disk(db, src, volumes=2, size=10 * GB, actual_sizes=[GB, 2 * GB])
    refused(db, "MD007", CALL1, (disk.disk_id, src, small))
    roomy = make_domain(db, pool, available_gb=3)
    db.execute(CALL1, (disk.disk_id, src, roomy))
    # Preallocated volumes need their virtual size.
    prealloc = make_disk(db, src, volumes=1, size=5 * GB, actual_sizes=[GB], volume_type=1)
    refused(db, "MD007", CALL1, (prealloc.disk_id, src, make_domain(db, pool, available_gb=4)))
    unknown = make_domain(db, pool, available_gb=None)
    refused(db, "MD007", CALL1, (prealloc.disk_id, src, unknown))


def test_phase1_refuses_a_move_back_onto_a_leftover_of_the_same_disk(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    move_phase3(db, s)
    db.execute("SELECT MarkTemporaryDiskIllegal(%s)", (tmp,))  # deletion on S failed
    assert "leftover" in refused(db, "MD003", CALL1, (s.disk.disk_id, s.dest, s.src))


def test_phase3_maps_every_volume_to_the_destination_and_unlocks(db) -> None:
    s = setup(db, volumes=3)
    tmp, _ = move_phase1(db, s)
    assert move_phase3(db, s) == 3
    assert domains_of(db, s.disk.disk_id) == {s.dest}
    assert statuses(db, s.disk.disk_id) == [OK] * 3
    assert domains_of(db, tmp) == {s.src} and statuses(db, tmp) == [LOCKED] * 3
    # Repeating phase 3 (recovery rolling forward twice) changes nothing.
    assert move_phase3(db, s) == 0


def test_phase3_refuses_without_a_pending_move(db) -> None:
    s = setup(db)
    call = "SELECT UpdateImageGroupStorageDomain(%s, %s, %s)"
    refused(db, "MD003", call, (s.disk.disk_id, s.src, s.dest))
    refused(db, "MD001", call, (new_id(), s.src, s.dest))
    tmp, _ = move_phase1(db, s)
    db.execute("SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))  # compensated
    assert "already ended" in refused(db, "MD003", call, (s.disk.disk_id, s.src, s.dest))


def test_compensation_unlocks_the_original_and_records_the_partial_copy(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    # Before phase 3 only compensation fits: marking without unlocking is the end with success.
    assert "has not committed" in refused(db, "MD003", "SELECT MarkTemporaryDiskIllegal(%s)", (tmp,))
    assert db.execute("SELECT MarkTemporaryDiskIllegal(v_image_group_id => %s, "
                      "v_unlock_original => TRUE) AS n", (tmp,)).fetchone()["n"] == 2
    assert statuses(db, tmp) == [ILLEGAL] * 2 and statuses(db, s.disk.disk_id) == [OK] * 2
    pending = db.execute("SELECT image_group_id, storage_domain_id, reason, temporary_disk_id "
                         "FROM GetAllImageGroupsToBeDeleted()").fetchall()
    assert pending == [{"image_group_id": s.disk.disk_id, "storage_domain_id": s.dest,
                        "reason": "MOVE_FAILED", "temporary_disk_id": tmp}]
    # A repeat (a retry after a crash) says "already happened": 0, nothing changes.
    before = snapshot(db)
    assert db.execute("SELECT MarkTemporaryDiskIllegal(%s, TRUE) AS n", (tmp,)).fetchone()["n"] == 0
    assert snapshot(db) == before


def test_end_with_success_marks_only_after_phase3(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    move_phase3(db, s)
    assert "roll forward" in refused(db, "MD003", "SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))
    assert db.execute("SELECT MarkTemporaryDiskIllegal(%s) AS n", (tmp,)).fetchone()["n"] == 2
    assert statuses(db, tmp) == [ILLEGAL] * 2 and statuses(db, s.disk.disk_id) == [OK] * 2
    assert db.execute("SELECT MarkTemporaryDiskIllegal(%s) AS n", (tmp,)).fetchone()["n"] == 0
    assert "nothing to compensate" in refused(
        db, "MD003", "SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))
    pending = db.execute("SELECT image_group_id, storage_domain_id, reason "
                         "FROM GetAllImageGroupsToBeDeleted()").fetchall()
    assert pending == [{"image_group_id": s.disk.disk_id, "storage_domain_id": s.src,
                        "reason": "SOURCE_AFTER_MOVE"}]
    # Removing the leftover once the agent deleted it on S confirms that deletion too.
    db.execute("SELECT RemoveTemporaryDisk(%s, v_storage_deleted => TRUE)", (tmp,))
    assert db.execute("SELECT * FROM GetAllImageGroupsToBeDeleted()").fetchall() == []


def test_mark_illegal_refuses_unknown_and_non_temporary_disks(db) -> None:
    s = setup(db)
    refused(db, "MD001", "SELECT MarkTemporaryDiskIllegal(%s)", (new_id(),))
    refused(db, "MD006", "SELECT MarkTemporaryDiskIllegal(%s)", (s.disk.disk_id,))


def count(db, table, where="TRUE", params=()):
    return db.execute(f"SELECT count(*) AS n FROM {table} WHERE {where}", params).fetchone()["n"]


def test_remove_after_failure_is_db_only_and_keeps_the_original(db) -> None:
    s = setup(db)
    tmp, mapping = move_phase1(db, s)
    db.execute("SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))
    assert db.execute("SELECT RemoveTemporaryDisk(%s) AS n", (tmp,)).fetchone()["n"] == 2
    assert count(db, "images", "image_group_id = %s", (tmp,)) == 0
    assert count(db, "base_disks", "disk_id = %s", (tmp,)) == 0
    assert count(db, "images_to_be_deleted") == 0
    assert count(db, "image_storage_domain_map", "image_id = ANY(%s)", (list(mapping.values()),)) == 0
    assert count(db, "disk_image_dynamic", "image_id = ANY(%s)", (list(mapping.values()),)) == 0
    assert domains_of(db, s.disk.disk_id) == {s.src} and statuses(db, s.disk.disk_id) == [OK] * 2


def test_remove_after_phase3_needs_the_agent_to_delete_first(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    move_phase3(db, s)
    assert "STORAGE_AND_DB" in refused(db, "MD003", "SELECT RemoveTemporaryDisk(%s)", (tmp,))
    db.execute("SELECT RemoveTemporaryDisk(v_image_group_id => %s, v_storage_deleted => TRUE)", (tmp,))
    assert count(db, "images", "image_group_id = %s", (tmp,)) == 0
    assert domains_of(db, s.disk.disk_id) == {s.dest}


def test_remove_refuses_a_move_in_flight_and_non_temporary_disks(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    assert "in flight" in refused(db, "MD003", "SELECT RemoveTemporaryDisk(%s, TRUE)", (tmp,))
    refused(db, "MD006", "SELECT RemoveTemporaryDisk(%s)", (s.disk.disk_id,))
    refused(db, "MD001", "SELECT RemoveTemporaryDisk(%s)", (new_id(),))


def test_a_full_successful_move_leaves_only_the_disk_on_the_destination(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    move_phase3(db, s)
    db.execute("SELECT RemoveTemporaryDisk(%s, TRUE)", (tmp,))
    assert domains_of(db, s.disk.disk_id) == {s.dest}
    assert count(db, "images_to_be_deleted") == 0 and count(db, "base_disks") == 1


def test_all_temporary_disks_report_their_state(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    row = db.execute("SELECT * FROM GetAllTemporaryDisks()").fetchone()
    assert (row["temporary_disk_id"], row["src_image_group_id"], row["temporary_status"],
            row["original_status"], row["original_on_src_storage"], row["volumes"]) == (
        tmp, s.disk.disk_id, LOCKED, LOCKED, True, 2)
    move_phase3(db, s)
    row = db.execute("SELECT * FROM GetAllTemporaryDisks()").fetchone()
    assert (row["original_status"], row["original_on_src_storage"]) == (OK, False)


def test_concurrent_moves_of_one_disk_one_wins(new_db) -> None:
    dsn = new_db()
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, row_factory=dict_row, autocommit=True) as a:
        s = setup(a)
    with psycopg.connect(dsn, row_factory=dict_row) as a, psycopg.connect(dsn, row_factory=dict_row) as b:
        move_phase1(a, s)
        b.execute("SET lock_timeout = '10s'")
        import threading

        threading.Timer(0.3, a.commit).start()
        with pytest.raises(psycopg.Error) as err:
            move_phase1(b, s)  # waits for a's row locks, then sees LOCKED
        assert err.value.sqlstate == "MD003"
