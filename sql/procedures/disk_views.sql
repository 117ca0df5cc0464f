-- Views of disks and volumes (oVirt's names and columns). Columns whose oVirt source
-- table is outside this schema (snapshots, disk profiles, image transfers, step
-- progress, LUNs) are kept with their oVirt name and type, always NULL, so that
-- oVirt's row mappers find every column they read.

-- vms_for_disk_view: the VMs and templates each disk is attached to.
CREATE OR REPLACE VIEW vms_for_disk_view AS
SELECT
    vm_device.device_id,
    vm_static.entity_type,
    array_agg(vm_static.vm_name) AS array_vm_names,
    array_agg(vm_static.template_version_name) AS array_template_version_name
FROM vm_static
INNER JOIN vm_device ON vm_static.vm_guid = vm_device.vm_id
WHERE vm_device.device = 'disk'
GROUP BY vm_device.device_id, vm_static.entity_type;

-- image_group_storage_domain_view: each storage domain on which a disk (image group) has a
-- volume mapped, once per volume. The package's one definition of "the data of image group G on
-- domain S is the live disk": a row (G, S) exists. IsImageGroupOnStorageDomain asks it; queries
-- that need the answer in their own plan (the removal plan) read it as EXISTS, with no call.
CREATE OR REPLACE VIEW image_group_storage_domain_view AS
SELECT
    images.image_group_id,
    image_storage_domain_map.storage_domain_id
FROM images
INNER JOIN image_storage_domain_map ON images.image_guid = image_storage_domain_map.image_id;

-- images_storage_domain_view: one row per volume and storage domain holding it, with its
-- disk, placement, data center, quota and statistics.
-- Columns in oVirt's order (row mappers and positional readers expect it), hence noqa ST06.
CREATE OR REPLACE VIEW images_storage_domain_view AS
SELECT  -- noqa: ST06
    images.image_guid,
    storage_domain_static.storage_name,
    storage_pool_iso_map.storage_pool_id,
    storage_domain_static.storage_type,
    images.creation_date,
    images.size,
    images.it_guid,
    NULL::VARCHAR(4000) AS description,
    NULL::TIMESTAMP WITH TIME ZONE AS snapshot_creation_date,
    images.parentid,
    images.lastmodified,
    NULL::TEXT AS app_list,
    image_storage_domain_map.storage_domain_id AS storage_id,
    images.vm_snapshot_id,
    images.volume_type,
    images.volume_format,
    images.qcow_compat,
    images.imagestatus,
    images.image_group_id,
    images.active,
    images.volume_classification,
    images.sequence_number,
    vms_for_disk_view.entity_type,
    array_to_string(vms_for_disk_view.array_vm_names, ',') AS vm_names,
    coalesce(array_upper(vms_for_disk_view.array_vm_names, 1), 0) AS number_of_vms,
    array_to_string(vms_for_disk_view.array_template_version_name, ',') AS template_version_names,
    base_disks.disk_id,
    base_disks.disk_alias,
    base_disks.disk_description,
    base_disks.shareable,
    base_disks.wipe_after_delete,
    base_disks.propagate_errors,
    base_disks.sgio,
    base_disks.disk_content_type,
    base_disks.backup,
    base_disks.backup_mode,
    image_storage_domain_map.quota_id,
    quota.quota_name,
    storage_pool.quota_enforcement_type,
    image_storage_domain_map.disk_profile_id,
    NULL::VARCHAR(50) AS disk_profile_name,
    disk_image_dynamic.actual_size,
    disk_image_dynamic.read_rate,
    disk_image_dynamic.read_ops,
    disk_image_dynamic.write_rate,
    disk_image_dynamic.write_ops,
    disk_image_dynamic.read_latency_seconds,
    disk_image_dynamic.write_latency_seconds,
    disk_image_dynamic.flush_latency_seconds,
    base_disks.disk_storage_type,
    base_disks.cinder_volume_type,
    NULL::INTEGER AS image_transfer_phase,
    NULL::INTEGER AS image_transfer_type,
    NULL::BIGINT AS image_transfer_bytes_sent,
    NULL::BIGINT AS image_transfer_bytes_total,
    NULL::BIGINT AS progress,
    -- Move Disk Two Phase Commit (added at the end: callers of the columns above are unchanged).
    -- A temporary (To_Be_Deleted) volume: its source volume, disk and domains.
    (image_move_links.src_image_id IS NOT NULL) AS is_temporary,
    image_move_links.src_image_id,
    image_move_links.src_image_group_id,
    image_move_links.src_storage,
    image_move_links.dest_storage,
    -- A source volume: the temporary volumes that stand for its pending leftovers (in no
    -- particular order: sorting them per row cost 3-7% of a point lookup at 1M images).
    image_move_links.leftover_image_ids,
    coalesce(cardinality(image_move_links.leftover_image_ids), 0) AS leftover_count
-- The joins are written in the order and grouping that keep point lookups cheap (the view
-- joins more relations than join_collapse_limit, so the planner keeps them): executor start-up
-- builds a tuple descriptor and a projection for every join node, as wide as the columns
-- carried through it, and dominates a point lookup. So the storage domain's relations are one
-- narrow sub-join, probed by index per volume, with no Materialize node, and the feature's
-- probe comes before the wide per-disk relations. The feature's probe is ONE relation,
-- image_move_links (images_to_be_deleted keyed by image id, kept by its trigger): a temporary
-- volume's source columns and a source volume's leftovers in one index probe, no aggregate (a
-- plain join: a hash join in listings). A storage-domain filter (GetAllForStorageDomain) still
-- drives from image_storage_domain_map's index.
FROM images
LEFT JOIN (
    image_storage_domain_map
    LEFT JOIN storage_domain_static
        ON image_storage_domain_map.storage_domain_id = storage_domain_static.id
    LEFT JOIN quota ON image_storage_domain_map.quota_id = quota.id
    LEFT JOIN storage_pool_iso_map ON storage_domain_static.id = storage_pool_iso_map.storage_id
    LEFT JOIN storage_pool ON storage_pool_iso_map.storage_pool_id = storage_pool.id
) ON images.image_guid = image_storage_domain_map.image_id
LEFT JOIN image_move_links ON images.image_guid = image_move_links.image_id
LEFT JOIN vms_for_disk_view ON images.image_group_id = vms_for_disk_view.device_id
LEFT JOIN disk_image_dynamic ON images.image_guid = disk_image_dynamic.image_id
LEFT JOIN base_disks ON images.image_group_id = base_disks.disk_id
WHERE images.image_guid != '00000000-0000-0000-0000-000000000000';

-- storage_for_image_view: every storage domain (and quota there) of each volume, as lists.
CREATE OR REPLACE VIEW storage_for_image_view AS
SELECT
    images.image_guid AS image_id,
    array_to_string(array_agg(storage_domain_static.id), ',') AS storage_id,
    array_to_string(array_agg(storage_domain_static.storage_type), ',') AS storage_type,
    array_to_string(array_agg(storage_domain_static.storage_name), ',') AS storage_name,
    array_to_string(array_agg(coalesce(quota.id::VARCHAR, '')), ',') AS quota_id,
    array_to_string(array_agg(coalesce(quota.quota_name, '')), ',') AS quota_name,
    array_to_string(
        array_agg(coalesce(image_storage_domain_map.disk_profile_id::VARCHAR, '')), ','
    ) AS disk_profile_id,
    array_to_string(array_agg(''::VARCHAR), ',') AS disk_profile_name
FROM images
LEFT JOIN image_storage_domain_map ON images.image_guid = image_storage_domain_map.image_id
LEFT JOIN storage_domain_static
    ON image_storage_domain_map.storage_domain_id = storage_domain_static.id
LEFT JOIN quota ON image_storage_domain_map.quota_id = quota.id
GROUP BY images.image_guid;

-- vm_images_view: the active (leaf) volumes, one row each, with all their storage domains listed.
CREATE OR REPLACE VIEW vm_images_view AS
SELECT DISTINCT ON (isdv.image_guid)
    sfi.storage_id,
    sfi.storage_name,
    sfi.storage_type,
    isdv.storage_pool_id,
    isdv.image_guid,
    isdv.creation_date,
    isdv.actual_size,
    isdv.read_rate,
    isdv.read_ops,
    isdv.read_latency_seconds,
    isdv.write_latency_seconds,
    isdv.flush_latency_seconds,
    isdv.write_rate,
    isdv.write_ops,
    isdv.size,
    isdv.it_guid,
    isdv.description,
    isdv.parentid,
    isdv.imagestatus,
    isdv.lastmodified,
    isdv.app_list,
    isdv.vm_snapshot_id,
    isdv.volume_type,
    isdv.image_group_id,
    isdv.active,
    isdv.volume_classification,
    isdv.volume_format,
    isdv.qcow_compat,
    isdv.wipe_after_delete,
    isdv.propagate_errors,
    isdv.sgio,
    isdv.disk_content_type,
    isdv.backup,
    isdv.backup_mode,
    isdv.sequence_number,
    isdv.entity_type,
    isdv.number_of_vms,
    isdv.vm_names,
    isdv.template_version_names,
    sfi.quota_id,
    sfi.quota_name,
    isdv.quota_enforcement_type,
    sfi.disk_profile_id,
    sfi.disk_profile_name,
    isdv.disk_id,
    isdv.disk_alias,
    isdv.disk_description,
    isdv.shareable,
    isdv.image_transfer_phase,
    isdv.image_transfer_type,
    isdv.image_transfer_bytes_sent,
    isdv.image_transfer_bytes_total,
    isdv.progress,
    isdv.disk_storage_type,
    isdv.cinder_volume_type,
    isdv.is_temporary,
    isdv.src_image_id,
    isdv.src_image_group_id,
    isdv.src_storage,
    isdv.dest_storage,
    isdv.leftover_image_ids,
    isdv.leftover_count
FROM images_storage_domain_view AS isdv
INNER JOIN storage_for_image_view AS sfi ON isdv.image_guid = sfi.image_id
-- The volume's disk_image_dynamic row (oVirt joins it again here): isdv has its columns, and
-- actual_size, NOT NULL in the table, is NULL exactly when the volume has no such row.
WHERE isdv.active = TRUE AND isdv.actual_size IS NOT NULL
ORDER BY isdv.image_guid;

-- all_disks_including_snapshots: every volume of every image disk, one row each, with its disk.
CREATE OR REPLACE VIEW all_disks_including_snapshots AS
SELECT DISTINCT ON (isdv.image_guid)
    sfi.storage_id,
    sfi.storage_name,
    sfi.storage_type,
    isdv.storage_pool_id,
    isdv.image_guid,
    isdv.creation_date,
    isdv.actual_size,
    isdv.read_rate,
    isdv.read_ops,
    isdv.write_rate,
    isdv.write_ops,
    isdv.read_latency_seconds::NUMERIC AS read_latency_seconds,
    isdv.write_latency_seconds::NUMERIC AS write_latency_seconds,
    isdv.flush_latency_seconds::NUMERIC AS flush_latency_seconds,
    isdv.size,
    isdv.it_guid,
    isdv.imagestatus,
    isdv.lastmodified,
    isdv.volume_type,
    isdv.volume_format,
    isdv.qcow_compat,
    isdv.image_group_id,
    isdv.description::VARCHAR AS description,
    isdv.parentid,
    isdv.app_list,
    isdv.vm_snapshot_id,
    isdv.active,
    isdv.volume_classification,
    isdv.sequence_number,
    isdv.entity_type,
    isdv.number_of_vms,
    isdv.vm_names,
    isdv.template_version_names,
    sfi.quota_id,
    sfi.quota_name,
    isdv.quota_enforcement_type,
    isdv.image_transfer_phase,
    isdv.image_transfer_type,
    isdv.image_transfer_bytes_sent,
    isdv.image_transfer_bytes_total,
    isdv.progress,
    sfi.disk_profile_id,
    sfi.disk_profile_name,
    NULL::VARCHAR AS lun_id,
    NULL::VARCHAR AS physical_volume_id,
    NULL::VARCHAR AS volume_group_id,
    NULL::VARCHAR AS serial,
    NULL::INTEGER AS lun_mapping,
    NULL::VARCHAR AS vendor_id,
    NULL::VARCHAR AS product_id,
    NULL::INTEGER AS device_size,
    NULL::BIGINT AS discard_max_size,
    base_disks.disk_id,
    base_disks.wipe_after_delete,
    base_disks.propagate_errors,
    base_disks.disk_alias,
    base_disks.disk_description,
    base_disks.shareable,
    base_disks.sgio,
    base_disks.disk_storage_type,
    base_disks.cinder_volume_type,
    base_disks.disk_content_type,
    base_disks.backup,
    base_disks.backup_mode,
    isdv.is_temporary,
    isdv.src_image_id,
    isdv.src_image_group_id,
    isdv.src_storage,
    isdv.dest_storage,
    isdv.leftover_image_ids,
    isdv.leftover_count
FROM images_storage_domain_view AS isdv
INNER JOIN storage_for_image_view AS sfi ON isdv.image_guid = sfi.image_id
INNER JOIN base_disks ON isdv.image_group_id = base_disks.disk_id
ORDER BY isdv.image_guid;

-- all_disks: every disk, by its active (leaf) volume.
-- SELECT * as oVirt defines it: all_disks has exactly the columns of
-- all_disks_including_snapshots, frozen when the view is created (noqa AM04).
CREATE OR REPLACE VIEW all_disks AS
SELECT *  -- noqa: AM04
FROM all_disks_including_snapshots
WHERE active IS NULL OR active = TRUE;
