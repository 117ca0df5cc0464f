"""The engine schema: every oVirt-compatible function on real rows, and oVirt's result columns."""

from __future__ import annotations

import uuid

import pytest

from tests.engine_rows import (
    COW, DOMAIN_ACTIVE, DOMAIN_MAINTENANCE, GB, IMAGE_ILLEGAL, IMAGE_LOCKED, IMAGE_OK, SPARSE, ZERO,
    make_disk, make_domain, make_pool, make_vm, now,
)

# Result columns of oVirt 4.5's views, in order (from create_views.sql as built by oVirt's schema.sh).
IMAGES_STORAGE_DOMAIN_VIEW = (
    "image_guid storage_name storage_pool_id storage_type creation_date size it_guid description "
    "snapshot_creation_date parentid lastmodified app_list storage_id vm_snapshot_id volume_type "
    "volume_format qcow_compat imagestatus image_group_id active volume_classification sequence_number "
    "entity_type vm_names number_of_vms template_version_names disk_id disk_alias disk_description "
    "shareable wipe_after_delete propagate_errors sgio disk_content_type backup backup_mode quota_id "
    "quota_name quota_enforcement_type disk_profile_id disk_profile_name actual_size read_rate read_ops "
    "write_rate write_ops read_latency_seconds write_latency_seconds flush_latency_seconds "
    "disk_storage_type cinder_volume_type image_transfer_phase image_transfer_type "
    "image_transfer_bytes_sent image_transfer_bytes_total progress"
).split()
ALL_DISKS = (
    "storage_id storage_name storage_type storage_pool_id image_guid creation_date actual_size read_rate "
    "read_ops write_rate write_ops read_latency_seconds write_latency_seconds flush_latency_seconds size "
    "it_guid imagestatus lastmodified volume_type volume_format qcow_compat image_group_id description "
    "parentid app_list vm_snapshot_id active volume_classification sequence_number entity_type "
    "number_of_vms vm_names template_version_names quota_id quota_name quota_enforcement_type "
    "image_transfer_phase image_transfer_type image_transfer_bytes_sent image_transfer_bytes_total "
    "progress disk_profile_id disk_profile_name lun_id physical_volume_id volume_group_id serial "
    "lun_mapping vendor_id product_id device_size discard_max_size disk_id wipe_after_delete "
    "propagate_errors disk_alias disk_description shareable sgio disk_storage_type cinder_volume_type "
    "disk_content_type backup backup_mode"
).split()
VM_IMAGES_VIEW = (
    "storage_id storage_name storage_type storage_pool_id image_guid creation_date actual_size read_rate "
    "read_ops read_latency_seconds write_latency_seconds flush_latency_seconds write_rate write_ops size "
    "it_guid description parentid imagestatus lastmodified app_list vm_snapshot_id volume_type "
    "image_group_id active volume_classification volume_format qcow_compat wipe_after_delete "
    "propagate_errors sgio disk_content_type backup backup_mode sequence_number entity_type number_of_vms "
    "vm_names template_version_names quota_id quota_name quota_enforcement_type disk_profile_id "
    "disk_profile_name disk_id disk_alias disk_description shareable image_transfer_phase "
    "image_transfer_type image_transfer_bytes_sent image_transfer_bytes_total progress "
    "disk_storage_type cinder_volume_type"
).split()
STORAGE_DOMAINS = (
    "id storage storage_name storage_description storage_comment storage_pool_id available_disk_size "
    "confirmed_available_disk_size vdo_savings used_disk_size commited_disk_size actual_images_size status "
    "storage_pool_name storage_type storage_domain_type storage_domain_format_type "
    "last_time_used_as_master wipe_after_delete discard_after_delete first_metadata_device "
    "vg_metadata_device backup block_size storage_domain_shared_status recoverable "
    "contains_unregistered_entities warning_low_space_indicator critical_space_action_blocker "
    "warning_low_confirmed_space_indicator external_status supports_discard is_hosted_engine_storage"
).split()
# Tables whose every oVirt 4.5 column is kept (pg_attribute order of an oVirt 4.5 database).
IMAGES = (
    "image_guid creation_date size it_guid parentid imagestatus lastmodified vm_snapshot_id volume_type "
    "volume_format image_group_id _create_date _update_date active volume_classification qcow_compat "
    "sequence_number"
).split()
BASE_DISKS = (
    "disk_id wipe_after_delete propagate_errors disk_alias disk_description shareable sgio "
    "disk_storage_type cinder_volume_type disk_content_type backup backup_mode"
).split()
IMAGE_STORAGE_DOMAIN_MAP = "image_id storage_domain_id quota_id disk_profile_id".split()
DISK_IMAGE_DYNAMIC = (
    "image_id read_rate write_rate actual_size read_latency_seconds write_latency_seconds "
    "flush_latency_seconds _update_date read_ops write_ops"
).split()


def columns(db, query, params=()):
    cur = db.execute(query, params)
    return [d.name for d in cur.description]


@pytest.mark.parametrize(
    "query, params, expected",
    [
        ("SELECT * FROM GetImageByImageGuid(%s)", (ZERO,), VM_IMAGES_VIEW),
        ("SELECT * FROM GetSnapshotsByImageGroupId(%s)", (ZERO,), IMAGES_STORAGE_DOMAIN_VIEW),
        ("SELECT * FROM GetSnapshotByLeafGuid(%s)", (ZERO,), IMAGES_STORAGE_DOMAIN_VIEW),
        ("SELECT * FROM GetAncestralImageByImageGuid(%s, NULL, FALSE)", (ZERO,), IMAGES_STORAGE_DOMAIN_VIEW),
        ("SELECT * FROM GetAllForStorageDomain(%s)", (ZERO,), IMAGES_STORAGE_DOMAIN_VIEW),
        ("SELECT * FROM GetVmImageByImageGuid(%s)", (ZERO,), VM_IMAGES_VIEW),
        ("SELECT * FROM GetDiskByDiskId(%s, NULL, FALSE)", (ZERO,), ALL_DISKS),
        ("SELECT * FROM GetAllFromDisks(NULL, FALSE)", (), ALL_DISKS),
        ("SELECT * FROM GetDiskAndSnapshotsByDiskId(%s, NULL, FALSE)", (ZERO,), ALL_DISKS),
        ("SELECT * FROM Getstorage_domains_By_storagePoolId(%s, NULL, FALSE)", (ZERO,), STORAGE_DOMAINS),
        ("SELECT * FROM GetImageByImageId(%s)", (ZERO,), IMAGES),
        ("SELECT * FROM GetBaseDiskByBaseDiskId(%s)", (ZERO,), BASE_DISKS),
        ("SELECT * FROM Getimage_storage_domain_mapByimage_id(%s)", (ZERO,), IMAGE_STORAGE_DOMAIN_MAP),
        ("SELECT * FROM Getdisk_image_dynamicByimage_id(%s)", (ZERO,), DISK_IMAGE_DYNAMIC),
    ],
)
def test_result_columns_match_ovirt(db, query, params, expected):
    got = columns(db, query, params)
    # oVirt's columns, in oVirt's order, first; the feature may only append after them.
    assert got[: len(expected)] == expected
    assert set(got[len(expected):]) <= FEATURE_COLUMNS


FEATURE_COLUMNS = {
    "is_temporary", "src_image_id", "src_image_group_id", "src_storage", "dest_storage",
    "leftover_image_ids", "leftover_count",
}


def test_three_volume_disk_lookups(db):
    pool = make_pool(db)
    vm = make_vm(db, pool)
    disk = make_disk(db, pool, vm=vm, volumes=3)
    base, mid, leaf = disk.images

    rows = db.execute("SELECT * FROM GetImageByImageGuid(%s)", (leaf,)).fetchall()
    assert len(rows) == 1
    r = rows[0]
    assert (r["image_guid"], r["parentid"], r["image_group_id"], r["disk_id"]) == (leaf, mid, disk.id, disk.id)
    # vm_images_view lists a volume's domains as text, as oVirt's does.
    assert (str(r["storage_id"]), r["storage_pool_id"], r["imagestatus"], r["active"]) == (
        str(disk.domain_id), pool.id, IMAGE_OK, True)
    assert (r["volume_type"], r["volume_format"], r["disk_alias"]) == (SPARSE, COW, disk.alias)
    assert (r["vm_names"], r["number_of_vms"], r["entity_type"]) == (vm.name, 1, "VM")
    assert r["quota_id"] == str(pool.quota_id) and r["actual_size"] == GB  # text, as in oVirt

    chain = db.execute("SELECT image_guid FROM GetSnapshotByLeafGuid(%s)", (leaf,)).fetchall()
    assert [c["image_guid"] for c in chain] == [leaf, mid, base]
    anc = db.execute("SELECT image_guid FROM GetAncestralImageByImageGuid(%s, NULL, FALSE)", (leaf,)).fetchall()
    assert [a["image_guid"] for a in anc] == [base]
    group = db.execute("SELECT image_guid FROM GetSnapshotsByImageGroupId(%s)", (disk.id,)).fetchall()
    assert {g["image_guid"] for g in group} == set(disk.images)
    child = db.execute("SELECT image_guid FROM GetSnapshotByParentGuid(%s)", (base,)).fetchall()
    assert [c["image_guid"] for c in child] == [mid]
    on_sd = db.execute("SELECT image_guid FROM GetAllForStorageDomain(%s)", (disk.domain_id,)).fetchall()
    assert [o["image_guid"] for o in on_sd] == [leaf]
    all_on_sd = db.execute("SELECT image_guid FROM GetSnapshotsByStorageDomainId(%s)", (disk.domain_id,))
    assert len(all_on_sd.fetchall()) == 3
    vmi = db.execute("SELECT * FROM GetVmImageByImageGuid(%s)", (leaf,)).fetchall()
    assert len(vmi) == 1 and vmi[0]["storage_id"] == str(disk.domain_id)
    assert db.execute("SELECT * FROM GetVmImageByImageGuid(%s)", (base,)).fetchall() == []
    one = db.execute("SELECT image_guid FROM GetDiskImageByDiskAndImageIds(%s, NULL, NULL, FALSE)",
                     (disk.id,)).fetchall()
    assert [o["image_guid"] for o in one] == [leaf]
    assert db.execute("SELECT GetMaxSequenceNumber(%s) AS n", (disk.id,)).fetchone()["n"] == 3
    # filtered callers see nothing: this schema keeps no permissions
    assert db.execute("SELECT * FROM GetDiskByDiskId(%s, %s, TRUE)", (disk.id, uuid.uuid4())).fetchall() == []


def test_all_disks(db):
    pool = make_pool(db)
    disk = make_disk(db, pool, volumes=3)
    rows = db.execute("SELECT * FROM GetDiskByDiskId(%s, NULL, FALSE)", (disk.id,)).fetchall()
    assert len(rows) == 1 and rows[0]["image_guid"] == disk.leaf
    assert rows[0]["storage_id"] == str(disk.domain_id) and rows[0]["number_of_vms"] == 0
    snaps = db.execute("SELECT image_guid FROM GetDiskAndSnapshotsByDiskId(%s, NULL, FALSE)", (disk.id,))
    assert {s["image_guid"] for s in snaps.fetchall()} == set(disk.images)
    listed = db.execute("SELECT image_group_id FROM GetAllFromDisks(NULL, FALSE)").fetchall()
    assert disk.id in {r["image_group_id"] for r in listed}
    every = db.execute("SELECT image_guid FROM GetAllFromDisksIncludingSnapshots(NULL, FALSE)").fetchall()
    assert set(disk.images) <= {r["image_guid"] for r in every}


def test_template_volume_on_two_domains_is_one_row_in_listings(db):
    pool = make_pool(db)
    disk = make_disk(db, pool, pool.domains[0], volumes=1)
    db.execute("SELECT Insertimage_storage_domain_map(%s, %s, NULL, NULL)", (disk.leaf, pool.domains[1]))
    # oVirt 4.5's GetImageByImageGuid (vm_images_view) lists both domains in one row.
    rows = db.execute("SELECT storage_id FROM GetImageByImageGuid(%s)", (disk.leaf,)).fetchall()
    assert len(rows) == 1 and set(rows[0]["storage_id"].split(",")) == {str(d) for d in pool.domains}
    rows = db.execute("SELECT storage_id FROM GetDiskByDiskId(%s, NULL, FALSE)", (disk.id,)).fetchall()
    assert len(rows) == 1
    assert set(rows[0]["storage_id"].split(",")) == {str(d) for d in pool.domains}
    doms = db.execute("SELECT id FROM Getstorage_domains_List_By_ImageId(%s)", (disk.leaf,)).fetchall()
    assert {d["id"] for d in doms} == set(pool.domains)


def test_image_updates_and_deletes(db):
    pool = make_pool(db)
    disk = make_disk(db, pool, volumes=3)
    db.execute("SELECT UpdateStatusOfImagesByImageGroupId(%s, %s)", (disk.id, IMAGE_LOCKED))
    st = db.execute("SELECT imagestatus FROM GetSnapshotsByImageGroupId(%s)", (disk.id,)).fetchall()
    assert {s["imagestatus"] for s in st} == {IMAGE_LOCKED}
    db.execute("SELECT UpdateImageStatus(%s, %s)", (disk.leaf, IMAGE_ILLEGAL))
    assert db.execute("SELECT imagestatus FROM GetImageByImageId(%s)", (disk.leaf,)).fetchone() == {
        "imagestatus": IMAGE_ILLEGAL}
    db.execute("SELECT UpdateImageSize(%s, %s, %s)", (disk.leaf, 20 * GB, now()))
    snap = uuid.uuid4()
    db.execute("SELECT UpdateImageVmSnapshotId(%s, %s)", (disk.leaf, snap))
    r = db.execute("SELECT size, vm_snapshot_id FROM GetImageByImageId(%s)", (disk.leaf,)).fetchone()
    assert r == {"size": 20 * GB, "vm_snapshot_id": snap}
    assert [x["image_guid"] for x in db.execute(
        "SELECT image_guid FROM GetSnapshotsByVmSnapshotId(%s)", (snap,)).fetchall()] == [disk.leaf]
    assert len(db.execute("SELECT * FROM GetDiskSnapshotForVmSnapshot(%s, %s)", (disk.id, snap)).fetchall()) == 1
    img = db.execute("SELECT * FROM GetImageByImageId(%s)", (disk.leaf,)).fetchone()
    db.execute(
        "SELECT UpdateImage(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::SMALLINT, %s, %s)",
        (img["creation_date"], disk.leaf, img["it_guid"], img["size"], img["parentid"], IMAGE_OK,
         now(), img["vm_snapshot_id"], 1, 5, disk.id, True, 0, 1, 7),
    )
    r = db.execute("SELECT * FROM GetImageByImageId(%s)", (disk.leaf,)).fetchone()
    assert (r["imagestatus"], r["volume_type"], r["volume_format"], r["qcow_compat"], r["sequence_number"]) == (
        IMAGE_OK, 1, 5, 1, 7)
    assert r["_update_date"] is not None
    # the map rows go with the volume (ON DELETE CASCADE)
    db.execute("SELECT DeleteImage(%s)", (disk.leaf,))
    assert db.execute("SELECT * FROM GetImageByImageGuid(%s)", (disk.leaf,)).fetchall() == []
    assert db.execute("SELECT * FROM Getimage_storage_domain_mapByimage_id(%s)", (disk.leaf,)).fetchall() == []
    assert len(db.execute("SELECT * FROM GetAllFromImages()").fetchall()) >= 2


def test_base_disks(db):
    pool = make_pool(db)
    disk = make_disk(db, pool, volumes=1, wipe_after_delete=True)
    r = db.execute("SELECT * FROM GetBaseDiskByBaseDiskId(%s)", (disk.id,)).fetchone()
    assert (r["disk_alias"], r["wipe_after_delete"], r["propagate_errors"]) == (disk.alias, True, "Off")
    db.execute(
        "SELECT UpdateBaseDisk(%s, FALSE, 'Off', 'renamed', 'd', TRUE, NULL, 0::SMALLINT, NULL, 0::SMALLINT, 'None', NULL)",
        (disk.id,),
    )
    r = db.execute("SELECT * FROM GetBaseDisksByAlias('renamed')").fetchone()
    assert (r["disk_id"], r["wipe_after_delete"], r["shareable"]) == (disk.id, False, True)
    assert disk.id in {d["disk_id"] for d in db.execute("SELECT * FROM GetAllFromBaseDisks()").fetchall()}
    db.execute("SELECT DeleteBaseDisk(%s)", (disk.id,))
    assert db.execute("SELECT * FROM GetBaseDiskByBaseDiskId(%s)", (disk.id,)).fetchall() == []


def test_image_storage_domain_map(db):
    pool = make_pool(db)
    disk = make_disk(db, pool, pool.domains[0], volumes=2)
    for img in disk.images:
        db.execute("SELECT Insertimage_storage_domain_map(%s, %s, NULL, NULL)", (img, pool.domains[1]))
    on_dst = db.execute("SELECT image_id FROM Getimage_storage_domain_mapBystorage_domain_id(%s)",
                        (pool.domains[1],)).fetchall()
    assert {r["image_id"] for r in on_dst} == set(disk.images)
    db.execute("SELECT UpdateQuotaForImageAndSnapshots(%s, %s, %s)", (disk.id, pool.domains[1], pool.quota_id))
    profile = uuid.uuid4()
    db.execute("SELECT UpdateDiskProfileByImageGroupId(%s, %s, %s)", (disk.id, pool.domains[1], profile))
    rows = db.execute("SELECT * FROM Getimage_storage_domain_mapByimage_id(%s)", (disk.leaf,)).fetchall()
    by_sd = {r["storage_domain_id"]: r for r in rows}
    assert by_sd[pool.domains[1]]["quota_id"] == pool.quota_id
    assert by_sd[pool.domains[1]]["disk_profile_id"] == profile
    for img in disk.images:
        db.execute("SELECT Deleteimage_storage_domain_map(%s, %s)", (img, pool.domains[0]))
    r = db.execute("SELECT DISTINCT storage_id FROM GetSnapshotsByImageGroupId(%s)", (disk.id,)).fetchall()
    assert r == [{"storage_id": pool.domains[1]}]
    db.execute("SELECT Deleteimage_storage_domain_map_by_image_id(%s)", (disk.leaf,))
    assert db.execute("SELECT * FROM Getimage_storage_domain_mapByimage_id(%s)", (disk.leaf,)).fetchall() == []


def test_disk_image_dynamic(db):
    pool = make_pool(db)
    disk = make_disk(db, pool, volumes=1)
    db.execute("SELECT Updatedisk_image_dynamic(%s, 1, 2, 3, 4, %s, 0.5, 0.25, 0.125)", (disk.leaf, 2 * GB))
    r = db.execute("SELECT * FROM Getdisk_image_dynamicByimage_id(%s)", (disk.leaf,)).fetchone()
    assert (r["read_rate"], r["read_ops"], r["write_rate"], r["write_ops"], r["actual_size"]) == (1, 2, 3, 4, 2 * GB)
    assert r["_update_date"] is not None
    assert len(db.execute("SELECT * FROM GetAllFromdisk_image_dynamic()").fetchall()) >= 1
    db.execute("SELECT Deletedisk_image_dynamic(%s)", (disk.leaf,))
    assert db.execute("SELECT * FROM Getdisk_image_dynamicByimage_id(%s)", (disk.leaf,)).fetchall() == []


def test_storage_domains_and_pools(db):
    pool = make_pool(db)
    src, dst = pool.domains
    make_disk(db, pool, src, volumes=2, size=10 * GB, actual_size=GB)
    rows = db.execute("SELECT * FROM Getstorage_domains_By_storagePoolId(%s, NULL, FALSE)", (pool.id,)).fetchall()
    assert {r["id"] for r in rows} == {src, dst}
    r = db.execute("SELECT * FROM Getstorage_domains_By_id_and_by_storage_pool_id(%s, %s)", (src, pool.id)).fetchone()
    assert (r["status"], r["storage_pool_name"], r["available_disk_size"], r["used_disk_size"]) == (
        DOMAIN_ACTIVE, pool.name, 500, 100)
    assert (r["commited_disk_size"], r["actual_images_size"], r["storage_domain_shared_status"]) == (11, 2, 1)
    db.execute("SELECT Updatestorage_pool_iso_map_status(%s, %s, %s)", (dst, pool.id, DOMAIN_MAINTENANCE))
    m = db.execute("SELECT * FROM Getstorage_pool_iso_mapBystorage_idAndBystorage_pool_id(%s, %s)",
                   (dst, pool.id)).fetchone()
    assert m["status"] == DOMAIN_MAINTENANCE
    active = db.execute("SELECT id FROM Getstorage_domain_by_type_storagePoolId_and_status(1, %s, %s)",
                        (pool.id, DOMAIN_MAINTENANCE)).fetchall()
    assert [a["id"] for a in active] == [dst]
    db.execute("SELECT Updatestorage_domain_dynamic(%s, %s, %s)", (42, dst, 7))
    assert db.execute("SELECT available_disk_size, used_disk_size FROM Getstorage_domain_dynamicByid(%s)",
                      (dst,)).fetchone() == {"available_disk_size": 42, "used_disk_size": 7}
    assert db.execute("SELECT storage_name FROM Getstorage_domain_staticByid(%s)", (src,)).fetchone()
    by_pool = db.execute("SELECT id FROM Getstorage_domain_staticBystorage_pool_id(%s)", (pool.id,)).fetchall()
    assert {b["id"] for b in by_pool} == {src, dst}
    assert db.execute("SELECT * FROM Getstorage_poolByid(%s, NULL, FALSE)", (pool.id,)).fetchone()["name"] == pool.name
    assert [p["id"] for p in db.execute("SELECT id FROM Getstorage_poolsByStorageDomainId(%s)", (src,))] == [pool.id]
    db.execute("SELECT Updatestorage_pool_status(%s, 2)", (pool.id,))
    assert db.execute("SELECT status FROM Getstorage_poolByid(%s, NULL, FALSE)", (pool.id,)).fetchone()["status"] == 2
    assert len(db.execute("SELECT * FROM Getstorage_pool_iso_mapsBystorage_id(%s)", (src,)).fetchall()) == 1
    db.execute("SELECT Deletestorage_pool_iso_map(%s, %s)", (dst, pool.id))
    assert db.execute("SELECT * FROM Getstorage_pool_iso_mapsBystorage_id(%s)", (dst,)).fetchall() == []
    unattached = make_domain(db, None)
    assert db.execute("SELECT storage_pool_id FROM GetAllFromstorage_domains(NULL, FALSE) WHERE id = %s",
                      (unattached,)).fetchone() == {"storage_pool_id": None}
    db.execute("SELECT Deletestorage_domain_dynamic(%s)", (unattached,))
    db.execute("SELECT Deletestorage_domain_static(%s)", (unattached,))
    assert db.execute("SELECT * FROM Getstorage_domain_staticByid(%s)", (unattached,)).fetchall() == []


def test_vm_static_and_devices(db):
    pool = make_pool(db)
    vm = make_vm(db, pool)
    tmpl = uuid.uuid4()
    db.execute("SELECT InsertVmTemplateRow(%s, '', '', 1024, 'tmpl', 0, %s, NULL, 0, NULL, 'TEMPLATE', 'base')",
               (now(), tmpl))
    t = db.execute("SELECT * FROM GetVmStaticRowByVmGuid(%s)", (tmpl,)).fetchone()
    assert (t["entity_type"], t["vmt_guid"], t["template_status"]) == ("TEMPLATE", tmpl, 0)
    disk = make_disk(db, pool, vm=vm, volumes=1)
    dev = db.execute("SELECT * FROM GetVmDeviceRowByDeviceId(%s, %s)", (disk.id, vm.id)).fetchone()
    assert (dev["type"], dev["device"], dev["is_plugged"]) == ("disk", "disk", True)
    assert len(db.execute("SELECT * FROM GetVmDeviceRowsByVmId(%s, NULL, FALSE)", (vm.id,)).fetchall()) == 1
    db.execute("SELECT DeleteVmStatic(%s, TRUE)", (vm.id,))
    assert db.execute("SELECT * FROM GetVmDeviceRowByDeviceId(%s, NULL)", (disk.id,)).fetchall() == []
    db.execute("SELECT DeleteVmTemplates(%s)", (tmpl,))
    assert db.execute("SELECT * FROM GetVmStaticRowByVmGuid(%s)", (tmpl,)).fetchall() == []


def test_async_tasks(db):
    task, vdsm, cmd = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    pool = make_pool(db, domains=1)
    db.execute("SELECT Insertasync_tasks(0, 0, 1, NULL, %s, %s, NULL, %s, %s, %s, %s, 2)",
               (vdsm, task, cmd, cmd, now(), pool.id))
    db.execute("SELECT Updateasync_tasks(0, 0, 3, NULL, %s, %s, NULL, %s, %s, %s)", (vdsm, task, cmd, cmd, pool.id))
    r = db.execute("SELECT * FROM Getasync_tasksBytask_id(%s)", (task,)).fetchone()
    assert (r["status"], r["task_type"], r["vdsm_task_id"], r["command_id"]) == (3, 2, vdsm, cmd)
    assert db.execute("SELECT task_id FROM GetAsyncTasksByVdsmTaskId(%s)", (vdsm,)).fetchone()["task_id"] == task
    assert len(db.execute("SELECT * FROM GetAsyncTasksByStoragePoolId(%s)", (pool.id,)).fetchall()) == 1
    assert task in {t["task_id"] for t in db.execute("SELECT * FROM GetAllFromasync_tasks()").fetchall()}
    assert db.execute("SELECT Deleteasync_tasks(%s) AS n", (task,)).fetchone()["n"] == 1
    assert db.execute("SELECT Deleteasync_tasks(%s) AS n", (task,)).fetchone()["n"] == 0


def test_command_entities_and_compensation(db):
    cmd = uuid.uuid4()
    args = (None, None, cmd, 180, None, cmd, None, "{}", "Params", now(), "ACTIVE", False, True, None, None, None)
    db.execute("SELECT InsertOrUpdateCommandEntity(" + ", ".join(["%s"] * 16) + ")", args)
    db.execute("SELECT InsertOrUpdateCommandEntity(" + ", ".join(["%s"] * 16) + ")",
               args[:10] + ("SUCCEEDED",) + args[11:])
    r = db.execute("SELECT * FROM GetCommandEntityByCommandEntityId(%s)", (cmd,)).fetchone()
    assert (r["status"], r["command_type"], r["callback_enabled"]) == ("SUCCEEDED", 180, True)
    db.execute("SELECT UpdateCommandEntityStatus(%s, 'ENDED_SUCCESSFULLY')", (cmd,))
    db.execute("SELECT UpdateCommandEntityExecuted(%s, TRUE)", (cmd,))
    db.execute("SELECT UpdateCommandEntityNotified(%s, TRUE)", (cmd,))
    r = db.execute("SELECT * FROM GetCommandEntityByCommandEntityId(%s)", (cmd,)).fetchone()
    assert (r["status"], r["executed"], r["callback_notified"]) == ("ENDED_SUCCESSFULLY", True, True)
    assert len(db.execute("SELECT * FROM GetCommandEntitiesByParentCmdId(%s)", (cmd,)).fetchall()) == 1
    assert cmd in {c["command_id"] for c in db.execute("SELECT * FROM GetAllFromCommandEntities()").fetchall()}
    for order, entity in enumerate([uuid.uuid4(), uuid.uuid4()]):
        db.execute("SELECT insert_entity_snapshot(%s, %s, 'MoveOrCopyDisk', %s, 'Image', '{}', 'cls', 0, %s)",
                   (uuid.uuid4(), cmd, str(entity), order))
    snaps = db.execute("SELECT * FROM get_entity_snapshot_by_command_id(%s)", (cmd,)).fetchall()
    assert [s["insertion_order"] for s in snaps] == [0, 1]
    assert db.execute("SELECT * FROM get_entity_snapshot_by_id(%s)", (snaps[0]["id"],)).fetchone()["command_id"] == cmd
    db.execute("SELECT delete_entity_snapshot_by_command_id(%s)", (cmd,))
    assert db.execute("SELECT * FROM get_entity_snapshot_by_command_id(%s)", (cmd,)).fetchall() == []
    db.execute("SELECT DeleteCommandEntity(%s)", (cmd,))
    assert db.execute("SELECT * FROM GetCommandEntityByCommandEntityId(%s)", (cmd,)).fetchall() == []


AUDIT_LOG_PARAMS = (
    "v_audit_log_id v_log_time v_log_type v_log_type_name v_severity v_message v_user_id v_user_name "
    "v_vds_id v_vds_name v_vm_id v_vm_name v_vm_template_id v_vm_template_name v_storage_pool_id "
    "v_storage_pool_name v_storage_domain_id v_storage_domain_name v_cluster_id v_cluster_name v_quota_id "
    "v_quota_name v_correlation_id v_job_id v_gluster_volume_id v_gluster_volume_name v_call_stack "
    "v_repeatable v_brick_id v_brick_path v_origin v_custom_id v_custom_event_id v_event_flood_in_sec "
    "v_custom_data"
).split()


def insert_audit_log(db, **values):
    args = {p: None for p in AUDIT_LOG_PARAMS}
    for p in AUDIT_LOG_PARAMS:
        if p.endswith("_name") or p in ("v_call_stack", "v_brick_path", "v_custom_data"):
            args[p] = ""
    args.update(v_log_time=now(), v_origin="oVirt", v_custom_event_id=-1, v_event_flood_in_sec=30,
                v_repeatable=False)
    args.update({f"v_{k}": v for k, v in values.items()})
    placeholders = ", ".join(f"{p} => %({p})s" for p in AUDIT_LOG_PARAMS)
    return db.execute(f"SELECT * FROM InsertAuditLog({placeholders})", args).fetchone()["v_audit_log_id"]


def test_audit_log(db):
    since = now()
    first = insert_audit_log(db, log_type=2008, log_type_name="USER_MOVED_DISK", severity=0, message="Disk moved")
    second = insert_audit_log(db, log_type=2008, log_type_name="USER_MOVED_DISK", severity=0, message="Disk moved")
    assert second > first
    r = db.execute("SELECT * FROM GetAuditLogByAuditLogId(%s)", (first,)).fetchone()
    assert (r["message"], r["log_type"], r["origin"], r["deleted"]) == ("Disk moved", 2008, "oVirt", False)
    a1 = insert_audit_log(db, log_type=9000, severity=10, message="alert", vds_name="host1")
    assert insert_audit_log(db, log_type=9000, severity=10, message="alert", vds_name="host1") == a1
    assert insert_audit_log(db, log_type=9000, severity=10, message="alert", vds_name="host1",
                            repeatable=True) != a1
    db.execute("SELECT DeleteAuditLog(%s)", (first,))
    later = {x["audit_log_id"] for x in db.execute("SELECT * FROM GetAuditLogLaterThenDate(%s)", (since,))}
    assert first not in later and second in later


def test_quota_rows(db):
    pool = make_pool(db)
    lim = db.execute("SELECT count(*) AS n FROM quota_limitation WHERE quota_id = %s", (pool.quota_id,))
    assert lim.fetchone()["n"] == 1
    db.execute("SELECT DeleteQuotaLimitationByQuotaGuid(%s)", (pool.quota_id,))
    db.execute("SELECT DeleteQuotaByQuotaGuid(%s)", (pool.quota_id,))
    assert db.execute("SELECT count(*) AS n FROM quota WHERE id = %s", (pool.quota_id,)).fetchone()["n"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM images WHERE image_group_id = %s",
        "SELECT * FROM images WHERE parentid = %s",
        "SELECT * FROM images WHERE it_guid = %s",
        "SELECT * FROM images WHERE vm_snapshot_id = %s",
        "SELECT * FROM image_storage_domain_map WHERE storage_domain_id = %s",
        "SELECT * FROM image_storage_domain_map WHERE image_id = %s",
        "SELECT * FROM async_tasks WHERE command_id = %s",
        "SELECT * FROM business_entity_snapshot WHERE command_id = %s",
    ],
)
def test_lookups_use_indexes(db, query):
    db.execute("SET LOCAL enable_seqscan = off")
    plan = "\n".join(r["QUERY PLAN"] for r in db.execute("EXPLAIN " + query, (ZERO,)).fetchall())
    assert "Seq Scan" not in plan, plan
