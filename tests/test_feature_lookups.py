"""Lookups by image id / image group id consult images_to_be_deleted (new columns at the end)."""

from __future__ import annotations

from feature_rows import move_phase1, move_phase3, setup

NEW_COLUMNS = ["is_temporary", "src_image_id", "src_image_group_id", "src_storage",
               "dest_storage", "leftover_image_ids", "leftover_count"]


def test_the_views_end_with_the_new_columns(db) -> None:
    for view in ("images_storage_domain_view", "vm_images_view", "all_disks_including_snapshots",
                 "all_disks"):
        cols = [r["attname"] for r in db.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "ORDER BY attnum", (view,))]
        assert cols[-len(NEW_COLUMNS):] == NEW_COLUMNS, view


def test_a_temporary_image_says_so_and_names_its_source(db) -> None:
    s = setup(db)
    tmp, mapping = move_phase1(db, s)
    move_phase3(db, s)
    orig, temp = s.disk.images[1], mapping[s.disk.images[1]]
    row = db.execute("SELECT * FROM GetImageByImageGuid(%s)", (temp,)).fetchone()
    assert (row["is_temporary"], row["src_image_id"], row["src_image_group_id"], row["src_storage"],
            row["dest_storage"], row["disk_alias"]) == (
        True, orig, s.disk.disk_id, s.src, s.dest, "disk1_To_Be_Deleted")
    src = db.execute("SELECT * FROM GetImageByImageGuid(%s)", (orig,)).fetchone()
    assert (src["is_temporary"], src["leftover_image_ids"], src["leftover_count"], src["storage_id"]) == (
        False, [temp], 1, str(s.dest))  # vm_images_view: the domains as text, as in oVirt
    snaps = db.execute("SELECT * FROM GetSnapshotsByImageGroupId(%s)", (tmp,)).fetchall()
    assert len(snaps) == 2 and all(r["is_temporary"] for r in snaps)
    chain = db.execute("SELECT * FROM GetSnapshotByLeafGuid(%s)", (temp,)).fetchall()
    assert [r["is_temporary"] for r in chain] == [True, True]
    base = db.execute("SELECT * FROM GetAncestralImageByImageGuid(%s, NULL, FALSE)", (temp,)).fetchone()
    assert base["image_guid"] == mapping[s.disk.images[0]] and base["is_temporary"]
    disk = db.execute("SELECT * FROM GetDiskByDiskId(%s, NULL, FALSE)", (tmp,)).fetchone()
    assert disk["is_temporary"] and disk["src_image_group_id"] == s.disk.disk_id
    orig_disk = db.execute("SELECT * FROM GetDiskByDiskId(%s, NULL, FALSE)", (s.disk.disk_id,)).fetchone()
    assert not orig_disk["is_temporary"] and orig_disk["leftover_count"] == 1


def test_an_ordinary_image_has_no_temporary_information(db) -> None:
    s = setup(db)
    # GetImageByImageGuid answers the active (leaf) volume, as oVirt 4.5's does.
    row = db.execute("SELECT * FROM GetImageByImageGuid(%s)", (s.disk.images[-1],)).fetchone()
    assert (row["is_temporary"], row["src_image_id"], row["leftover_image_ids"], row["leftover_count"]) == (
        False, None, None, 0)


def test_disk_listings_filter_temporary_disks_in_or_out(db) -> None:
    s = setup(db)
    tmp, _ = move_phase1(db, s)
    every = {r["disk_id"] for r in db.execute("SELECT * FROM GetAllFromDisks(NULL, FALSE)")}
    assert {s.disk.disk_id, tmp} <= every
    without = {r["disk_id"] for r in db.execute(
        "SELECT * FROM GetAllFromDisks(NULL, FALSE, v_include_temporary => FALSE)")}
    assert s.disk.disk_id in without and tmp not in without
    vols = db.execute("SELECT * FROM GetAllFromDisksIncludingSnapshots(NULL, FALSE, FALSE)").fetchall()
    assert vols and not any(r["is_temporary"] for r in vols)
    on_src = {r["image_group_id"] for r in db.execute("SELECT * FROM GetAllForStorageDomain(%s)", (s.src,))}
    assert on_src == {s.disk.disk_id, tmp}
    on_src = {r["image_group_id"] for r in db.execute("SELECT * FROM GetAllForStorageDomain(%s, FALSE)", (s.src,))}
    assert on_src == {s.disk.disk_id}
