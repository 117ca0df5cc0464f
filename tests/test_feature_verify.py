"""The DBA's verification functions: each check sees exactly the inconsistency made for it."""

from __future__ import annotations

import psycopg
import pytest

from feature_rows import (
    ILLEGAL,
    LOCKED,
    make_disk,

    make_pool,
    make_quota,
    move_phase3,
    new_id,
    setup,
)


def findings(db, call="VerifyAll()"):
    return db.execute(f"SELECT * FROM {call}").fetchall()


def only(db, check, entity_id, call="VerifyAll()"):
    rows = findings(db, call)
    assert [(r["check_name"], r["entity_id"]) for r in rows] == [(check, entity_id)], rows
    assert rows[0]["severity"] in ("error", "warning") and rows[0]["message"]
    return rows[0]


def start_move(db, s, command_status="ACTIVE", with_task=True):
    """Phase 1 run by a recorded command with a live task, as the harness does it."""
    command = new_id()
    db.execute(
        "INSERT INTO command_entities (command_id, command_type, created_at, status) "
        "VALUES (%s, 1, now() - interval '1 hour', %s)", (command, command_status))
    rows = db.execute(
        "SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s, v_command_id => %s)",
        (s.disk.disk_id, s.src, s.dest, command)).fetchall()
    if with_task:
        db.execute(
            "INSERT INTO async_tasks (task_id, action_type, status, result, command_id, "
            "started_at, storage_pool_id) VALUES (%s, 1, 2, 0, %s, now(), %s)",
            (new_id(), command, s.pool))
    return command, rows[0]["temporary_disk_id"], {r["original_image_id"]: r["temporary_image_id"] for r in rows}


def illegal_leftover(db, s, created="now()"):
    """A temporary disk left ILLEGAL on S after the disk moved to D (deletion failed)."""
    command, tmp, mapping = start_move(db, s)
    move_phase3(db, s)
    db.execute("SELECT MarkTemporaryDiskIllegal(%s)", (tmp,))
    db.execute("UPDATE command_entities SET status = 'ENDED_WITH_FAILURE' WHERE command_id = %s",
               (command,))
    db.execute(f"UPDATE images_to_be_deleted SET _create_date = {created}")
    return tmp, mapping


def test_a_clean_database_has_no_finding(db) -> None:
    assert findings(db) == []
    s = setup(db)
    make_disk(db, s.dest, alias="other")
    assert findings(db) == []


def test_a_move_in_flight_and_a_fresh_leftover_are_no_finding(db) -> None:
    s = setup(db)
    start_move(db, s)
    assert findings(db) == []
    move_phase3(db, s)
    assert findings(db) == []


def test_temporary_image_without_its_row(db) -> None:
    s = setup(db)
    orphan = make_disk(db, s.src, volumes=1, alias="disk1_To_Be_Deleted", status=ILLEGAL)
    row = only(db, "temporary_image_without_row", orphan.images[0])
    assert row["severity"] == "error" and row["related_ids"] == [orphan.disk_id]


def test_a_user_disk_named_like_a_temporary_disk_is_no_finding(db) -> None:
    s = setup(db)
    # No disk named "backup": not a temporary disk phase 1 made.
    own = make_disk(db, s.src, volumes=1, alias="backup_To_Be_Deleted")
    assert findings(db) == []
    # A twin exists, but the disk is attached to a VM: temporary disks never are.
    make_disk(db, s.src, volumes=1, alias="backup")
    vm = new_id()
    db.execute("INSERT INTO vm_static (vm_guid, vm_name, vmt_guid, entity_type) "
               "VALUES (%s, 'vm1', %s, 'VM')", (vm, vm))
    db.execute("INSERT INTO vm_device (device_id, vm_id, type, device, address) "
               "VALUES (%s, %s, 'disk', 'disk', '')", (own.disk_id, vm))
    assert findings(db) == []
    # The same disk unattached, with its twin, is taken for a temporary disk that lost its rows.
    db.execute("DELETE FROM vm_device WHERE device_id = %s", (own.disk_id,))
    only(db, "temporary_image_without_row", own.images[0])


def test_a_temporary_volume_without_row_next_to_one_with_a_row(db) -> None:
    s = setup(db)
    _, tmp, mapping = start_move(db, s)
    lost = mapping[s.disk.images[0]]
    db.execute("SELECT DeleteImageToBeDeleted(%s)", (lost,))
    db.execute("UPDATE base_disks SET disk_alias = 'renamed' WHERE disk_id = %s", (tmp,))
    only(db, "temporary_image_without_row", lost)


def test_row_without_its_image(db) -> None:
    s = setup(db)
    ghost = new_id()
    db.execute("SET LOCAL session_replication_role = replica")  # as a careless restore would
    db.execute("SELECT InsertImageToBeDeleted(%s, %s, %s, %s, %s)",
               (ghost, s.disk.images[0], s.disk.disk_id, s.src, s.dest))
    db.execute("SET LOCAL session_replication_role = origin")
    only(db, "row_without_image", ghost, call="VerifyRowsWithoutImage()")
    # The restore also bypassed the trigger keeping image_move_links: the lookups' links lack
    # the ghost's row and the source volume's leftover, and the check says so for both.
    assert sorted((r["check_name"], r["entity_id"]) for r in findings(db)) == sorted([
        ("row_without_image", ghost), ("move_link_out_of_step", ghost),
        ("move_link_out_of_step", s.disk.images[0])])


def test_links_out_of_step_are_rebuilt_from_images_to_be_deleted(db) -> None:
    """RebuildImageMoveLinks, the DBA's repair after a restore that bypassed the trigger:
    the links as the trigger made them, the count of links fixed, and 0 once in step."""
    s = setup(db)
    _, _, mapping = start_move(db, s)
    links = "SELECT * FROM image_move_links ORDER BY image_id"
    kept = db.execute(links).fetchall()
    assert len(kept) == 2 * len(mapping)
    src, temp = s.disk.images[0], mapping[s.disk.images[0]]
    db.execute("DELETE FROM image_move_links WHERE image_id = %s", (temp,))
    db.execute("UPDATE image_move_links SET leftover_image_ids = NULL WHERE image_id = %s", (src,))
    db.execute("INSERT INTO image_move_links (image_id, leftover_image_ids) VALUES (%s, %s)",
               (new_id(), [temp]))
    assert len(findings(db, "VerifyImageMoveLinks()")) == 3
    assert db.execute("SELECT RebuildImageMoveLinks() AS n").fetchone()["n"] == 3
    assert findings(db) == []
    assert db.execute(links).fetchall() == kept
    assert db.execute("SELECT RebuildImageMoveLinks() AS n").fetchone()["n"] == 0


def test_move_links_out_of_step_with_images_to_be_deleted(db) -> None:
    """Every way the links can drift from images_to_be_deleted is reported, one finding per
    volume; the links the trigger keeps are never a finding."""
    s = setup(db)
    _, _, mapping = start_move(db, s)
    assert findings(db, "VerifyImageMoveLinks()") == []
    src, temp = s.disk.images[0], mapping[s.disk.images[0]]
    # A source volume's leftover lost (e.g. a lost array element).
    db.execute("UPDATE image_move_links SET leftover_image_ids = NULL WHERE image_id = %s", (src,))
    only(db, "move_link_out_of_step", src, call="VerifyImageMoveLinks()")
    db.execute("UPDATE image_move_links SET leftover_image_ids = %s WHERE image_id = %s",
               ([temp, temp], src))  # the element twice
    only(db, "move_link_out_of_step", src, call="VerifyImageMoveLinks()")
    db.execute("UPDATE image_move_links SET leftover_image_ids = %s WHERE image_id = %s",
               ([temp], src))
    # A temporary volume's source columns wrong, then its row gone, then a stray row.
    db.execute("UPDATE image_move_links SET dest_storage = src_storage, src_storage = dest_storage "
               "WHERE image_id = %s", (temp,))
    row = only(db, "move_link_out_of_step", temp, call="VerifyImageMoveLinks()")
    assert str(temp) in row["message"]
    db.execute("DELETE FROM image_move_links WHERE image_id = %s", (temp,))
    only(db, "move_link_out_of_step", temp)  # VerifyAll includes the check
    db.execute("INSERT INTO image_move_links (image_id, src_image_id, src_image_group_id, "
               "src_storage, dest_storage) SELECT image_id, src_image_id, src_image_group_id, "
               "src_storage, dest_storage FROM images_to_be_deleted WHERE image_id = %s", (temp,))
    stray = s.disk.images[-1] if len(s.disk.images) > 1 else new_id()
    db.execute("INSERT INTO image_move_links (image_id, leftover_image_ids) VALUES (%s, %s) "
               "ON CONFLICT (image_id) DO UPDATE SET leftover_image_ids = "
               "image_move_links.leftover_image_ids || excluded.leftover_image_ids",
               (stray, [new_id()]))
    only(db, "move_link_out_of_step", stray, call="VerifyImageMoveLinks()")


def test_row_whose_source_image_is_gone(db) -> None:
    s = setup(db)
    tmp, mapping = illegal_leftover(db, s)
    db.execute("DELETE FROM images WHERE image_guid = %s", (s.disk.images[0],))
    only(db, "source_image_gone", mapping[s.disk.images[0]])


def test_leftover_older_than_the_threshold(db) -> None:
    s = setup(db)
    tmp, mapping = illegal_leftover(db, s, created="now() - interval '2 days'")
    row = only(db, "old_leftover", tmp)
    assert sorted(row["related_ids"]) == sorted(mapping.values())
    assert findings(db, "VerifyAll(v_leftover_age => interval '3 days')") == []
    assert len(findings(db, "VerifyOldLeftovers(interval '1 hour')")) == 1


def test_locked_image_without_an_unfinished_command(db) -> None:
    s = setup(db)
    locked = make_disk(db, s.src, volumes=2, status=LOCKED, alias="stuck")
    row = only(db, "locked_image_without_command", locked.disk_id)
    assert sorted(row["related_ids"]) == sorted(locked.images)


def test_locked_move_whose_command_ended(db) -> None:
    s = setup(db)
    command, tmp, _ = start_move(db, s)
    db.execute("UPDATE command_entities SET status = 'ENDED_SUCCESSFULLY' WHERE command_id = %s",
               (command,))
    rows = findings(db)
    assert {(r["check_name"], r["entity_id"]) for r in rows} == {
        ("locked_image_without_command", s.disk.disk_id),
        ("locked_image_without_command", tmp),
    }


def test_unfinished_command_without_a_live_task(db) -> None:
    command = new_id()
    db.execute("INSERT INTO command_entities (command_id, command_type, created_at, status) "
               "VALUES (%s, 1, now() - interval '1 hour', 'ACTIVE')", (command,))
    only(db, "command_without_task", command)
    # A young command (its task is about to start) is not a finding yet.
    db.execute("UPDATE command_entities SET created_at = now() WHERE command_id = %s", (command,))
    assert findings(db) == []


def test_image_group_on_two_domains_outside_a_move(db) -> None:
    s = setup(db)
    db.execute("INSERT INTO image_storage_domain_map (image_id, storage_domain_id, quota_id) "
               "VALUES (%s, %s, %s)", (s.disk.images[0], s.dest, s.quota))
    row = only(db, "image_group_on_two_domains", s.disk.disk_id)
    assert set(row["related_ids"]) == {s.src, s.dest}


def test_quota_usage_that_disagrees_with_the_images(db) -> None:
    s = setup(db)
    other = make_quota(db, s.pool)
    db.execute("UPDATE image_storage_domain_map SET quota_id = %s WHERE image_id = %s",
               (other, s.disk.images[1]))
    only(db, "quota_usage_mismatch", s.disk.disk_id)


def test_quota_of_another_data_center(db) -> None:
    s = setup(db, volumes=1)
    foreign = make_quota(db, make_pool(db))
    db.execute("UPDATE image_storage_domain_map SET quota_id = %s", (foreign,))
    only(db, "quota_usage_mismatch", s.disk.images[0])


def test_leftover_charged_to_another_quota_than_its_source(db) -> None:
    s = setup(db, volumes=1)
    tmp, mapping = illegal_leftover(db, s)
    db.execute("UPDATE image_storage_domain_map SET quota_id = %s WHERE image_id = %s",
               (make_quota(db, s.pool), mapping[s.disk.images[0]]))
    only(db, "quota_usage_mismatch", mapping[s.disk.images[0]])


def test_each_check_function_alone(db) -> None:
    s = setup(db)
    make_disk(db, s.src, volumes=1, status=LOCKED, alias="stuck")
    assert len(findings(db, "VerifyLockedImagesWithoutCommand()")) == 1
    for fn in ("VerifyTemporaryImagesWithoutRow()", "VerifyRowsWithoutImage()",
               "VerifyRowsWithoutSourceImage()", "VerifyImageMoveLinks()", "VerifyOldLeftovers()",
               "VerifyCommandsWithoutTask()", "VerifyImageGroupsOnTwoDomains()",
               "VerifyQuotaUsage()"):
        assert findings(db, fn) == [], fn


def test_the_dba_role_runs_verification_read_only(db) -> None:
    s = setup(db)
    make_disk(db, s.src, volumes=1, status=LOCKED, alias="stuck")
    db.execute("SET LOCAL ROLE movedisk_dba")
    db.execute("SET LOCAL transaction_read_only = on")
    assert len(findings(db)) == 1
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("SELECT * FROM images")


def test_verification_functions_are_stable_and_granted_to_the_dba(db) -> None:
    rows = db.execute(
        "SELECT p.proname, p.provolatile, has_function_privilege('movedisk_dba', p.oid, 'EXECUTE') "
        "AS dba FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
        "AND p.proname LIKE 'verify%'").fetchall()
    assert len(rows) == 11
    assert all(r["provolatile"] == "s" and r["dba"] for r in rows), rows
    # The DBA may not run the phase helpers.
    assert not db.execute("SELECT has_function_privilege('movedisk_dba', "
                          "'createtemporarydiskformove(uuid,uuid,uuid,uuid,uuid)', 'EXECUTE') AS x"
                          ).fetchone()["x"]




def test_a_null_age_means_the_default_not_no_check(db) -> None:
    s = setup(db)
    tmp, _ = illegal_leftover(db, s, created="now() - interval '2 days'")
    assert [r["entity_id"] for r in findings(db, "VerifyOldLeftovers(NULL)")] == [tmp]
    assert [r["check_name"] for r in findings(db, "VerifyAll(NULL, NULL)")] == ["old_leftover"]
    command = new_id()
    db.execute("INSERT INTO command_entities (command_id, command_type, created_at, status) "
               "VALUES (%s, 1, now() - interval '1 hour', 'ACTIVE')", (command,))
    assert [r["entity_id"] for r in findings(db, "VerifyCommandsWithoutTask(NULL)")] == [command]


def test_a_move_started_without_a_command_is_no_finding(db) -> None:
    s = setup(db)
    db.execute("SELECT * FROM CreateTemporaryDiskForMove(%s, %s, %s)", (s.disk.disk_id, s.src, s.dest))
    assert findings(db) == []
    # Once its temporary disk is no longer LOCKED, a disk still LOCKED is stuck.
    tmp = db.execute("SELECT DISTINCT tmp.image_group_id AS id FROM images_to_be_deleted t "
                     "JOIN images tmp ON tmp.image_guid = t.image_id").fetchone()["id"]
    db.execute("UPDATE images SET imagestatus = %s WHERE image_group_id = %s", (ILLEGAL, tmp))
    only(db, "locked_image_without_command", s.disk.disk_id)
