"""images_to_be_deleted functions, the storage-match procedure [1] and the removal plan."""

from __future__ import annotations

from feature_rows import make_disk, move_phase1, move_phase3, new_id, refused, setup


def test_insert_get_and_delete_rows(db) -> None:
    s = setup(db)
    tmp_disk = make_disk(db, s.src, volumes=2, alias="tmp")
    for tmp_img, src_img in zip(tmp_disk.images, s.disk.images):
        db.execute(
            "SELECT InsertImageToBeDeleted(v_image_id => %s, v_src_image_id => %s, "
            "v_src_image_group_id => %s, v_src_storage => %s, v_dest_storage => %s)",
            (tmp_img, src_img, s.disk.disk_id, s.src, s.dest),
        )
    row = db.execute("SELECT * FROM GetImageToBeDeletedByImageId(%s)", (tmp_disk.images[0],)).fetchone()
    assert (row["src_image_id"], row["src_image_group_id"], row["src_storage"], row["dest_storage"]) == (
        s.disk.images[0], s.disk.disk_id, s.src, s.dest)
    assert row["_create_date"] is not None
    assert db.execute("SELECT * FROM GetImageToBeDeletedByImageId(%s)", (s.disk.images[0],)).fetchall() == []
    assert len(db.execute("SELECT * FROM GetAllFromImagesToBeDeleted()").fetchall()) == 2
    by_group = db.execute("SELECT image_id FROM GetImagesToBeDeletedBySrcImageGroupId(%s)",
                          (s.disk.disk_id,)).fetchall()
    assert {r["image_id"] for r in by_group} == set(tmp_disk.images)
    assert {r["image_id"] for r in db.execute(
        "SELECT image_id FROM GetImagesToBeDeletedBySrcStorage(%s)", (s.src,))} == set(tmp_disk.images)
    assert db.execute("SELECT * FROM GetImagesToBeDeletedBySrcStorage(%s)", (s.dest,)).fetchall() == []
    assert [r["image_id"] for r in db.execute(
        "SELECT image_id FROM GetImagesToBeDeletedBySrcImageId(%s)", (s.disk.images[1],))] == [tmp_disk.images[1]]
    assert {r["image_id"] for r in db.execute(
        "SELECT image_id FROM GetImagesToBeDeletedByImageGroupId(%s)", (tmp_disk.disk_id,))} == set(tmp_disk.images)
    db.execute("SELECT DeleteImageToBeDeleted(%s)", (tmp_disk.images[0],))
    assert len(db.execute("SELECT * FROM GetAllFromImagesToBeDeleted()").fetchall()) == 1


def test_storage_match_while_the_original_is_on_the_source(db) -> None:
    s = setup(db)
    tmp, mapping = move_phase1(db, s)
    for orig, temp in mapping.items():
        row = db.execute("SELECT * FROM GetSourceImageOnSourceStorage(%s)", (temp,)).fetchone()
        assert row == {"src_image_id": orig, "src_image_group_id": s.disk.disk_id,
                       "src_storage": s.src, "storage_pool_id": s.pool}
        assert db.execute("SELECT IsSourceImageOnSourceStorage(%s) AS b", (temp,)).fetchone()["b"] is True


def test_storage_match_after_phase3_and_for_other_ids(db) -> None:
    s = setup(db)
    tmp, mapping = move_phase1(db, s)
    move_phase3(db, s)
    for temp in mapping.values():
        assert db.execute("SELECT * FROM GetSourceImageOnSourceStorage(%s)", (temp,)).fetchall() == []
        assert db.execute("SELECT IsSourceImageOnSourceStorage(%s) AS b", (temp,)).fetchone()["b"] is False
    # Not a temporary image, or no image at all: no match.
    for other in (s.disk.images[0], new_id()):
        assert db.execute("SELECT * FROM GetSourceImageOnSourceStorage(%s)", (other,)).fetchall() == []
        assert db.execute("SELECT IsSourceImageOnSourceStorage(%s) AS b", (other,)).fetchone()["b"] is False


def test_storage_match_when_the_source_image_is_gone(db) -> None:
    s = setup(db)
    tmp, mapping = move_phase1(db, s)
    move_phase3(db, s)
    db.execute("DELETE FROM images WHERE image_group_id = %s", (s.disk.disk_id,))
    temp = mapping[s.disk.images[0]]
    assert db.execute("SELECT IsSourceImageOnSourceStorage(%s) AS b", (temp,)).fetchone()["b"] is False
    plan = db.execute("SELECT * FROM GetImageToBeDeletedRemovalPlan(%s)", (temp,)).fetchone()
    assert plan["removal"] == "STORAGE_AND_DB"


def test_removal_plan_db_only_while_the_original_is_live_on_the_source(db) -> None:
    s = setup(db, wipe_after_delete=True)
    tmp, mapping = move_phase1(db, s)
    db.execute("SELECT MarkTemporaryDiskIllegal(%s, TRUE)", (tmp,))
    for orig, temp in mapping.items():
        plan = db.execute("SELECT * FROM GetImageToBeDeletedRemovalPlan(%s)", (temp,)).fetchone()
        assert plan["removal"] == "DB_ONLY"
        assert (plan["image_id"], plan["image_group_id"], plan["src_image_id"]) == (temp, tmp, orig)


def test_removal_plan_storage_and_db_names_what_the_agent_deletes(db) -> None:
    s = setup(db, wipe_after_delete=True)
    tmp, mapping = move_phase1(db, s)
    move_phase3(db, s)
    temp = mapping[s.disk.images[1]]
    plan = db.execute("SELECT * FROM GetImageToBeDeletedRemovalPlan(v_image_id => %s)", (temp,)).fetchone()
    assert plan == {
        "image_id": temp, "image_group_id": tmp, "removal": "STORAGE_AND_DB",
        "storage_pool_id": s.pool, "storage_domain_id": s.src,
        "src_image_group_id": s.disk.disk_id, "src_image_id": s.disk.images[1],
        "wipe_after_delete": True, "imagestatus": 2, "delete_on_storage_domain_ids": [s.src],
    }


def test_removal_plan_refuses_unknown_and_non_temporary_images(db) -> None:
    s = setup(db)
    assert "no image" in refused(db, "MD001", "SELECT * FROM GetImageToBeDeletedRemovalPlan(%s)", (new_id(),))
    assert "not a temporary" in refused(
        db, "MD006", "SELECT * FROM GetImageToBeDeletedRemovalPlan(%s)", (s.disk.images[0],))
