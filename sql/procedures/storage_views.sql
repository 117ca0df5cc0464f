-- Views of storage domains (oVirt's names and columns).

-- storage_domain_shared_status: per domain, Active in every data center (1), in none (2),
-- or in some only (3).
CREATE OR REPLACE VIEW storage_domain_shared_status AS
SELECT
    storage_id,
    CASE
        WHEN count(CASE status WHEN 3 THEN 1 END) > 0
            THEN CASE WHEN count(DISTINCT status) > 1 THEN 3 ELSE 1 END
        ELSE 2
    END AS status
FROM storage_pool_iso_map
GROUP BY storage_id;

-- storage_domains_image_sizes: GB committed to and actually used by the volumes of each domain.
CREATE OR REPLACE VIEW storage_domains_image_sizes AS
SELECT
    isdm.storage_domain_id,
    cast(
        coalesce(
            sum(
                CASE
                    WHEN i.active = TRUE AND (vfdv.entity_type IS NULL OR vfdv.entity_type <> 'TEMPLATE')
                        THEN i.size
                    ELSE din.actual_size
                END
            ),
            0
        ) / 1073741824.0 AS BIGINT
    ) AS commited_disk_size,
    cast(coalesce(sum(din.actual_size), 0) / 1073741824.0 AS BIGINT) AS actual_images_size
FROM images AS i
INNER JOIN image_storage_domain_map AS isdm ON i.image_guid = isdm.image_id
LEFT JOIN disk_image_dynamic AS din ON i.image_guid = din.image_id
LEFT JOIN vms_for_disk_view AS vfdv ON i.image_group_id = vfdv.device_id
GROUP BY isdm.storage_domain_id;

-- storage_domains: each storage domain with its data center, status there and space.
-- Columns in oVirt's order (row mappers and positional readers expect it), hence noqa ST06.
CREATE OR REPLACE VIEW storage_domains AS
SELECT  -- noqa: ST06
    storage_domain_static.id,
    storage_domain_static.storage,
    storage_domain_static.storage_name,
    storage_domain_static.storage_description,
    storage_domain_static.storage_comment,
    storage_pool_iso_map.storage_pool_id,
    storage_domain_dynamic.available_disk_size,
    storage_domain_dynamic.confirmed_available_disk_size,
    storage_domain_dynamic.vdo_savings,
    storage_domain_dynamic.used_disk_size,
    storage_domains_image_sizes.commited_disk_size,
    storage_domains_image_sizes.actual_images_size,
    storage_pool_iso_map.status,
    storage_pool.name AS storage_pool_name,
    storage_domain_static.storage_type,
    storage_domain_static.storage_domain_type,
    storage_domain_static.storage_domain_format_type,
    storage_domain_static.last_time_used_as_master,
    storage_domain_static.wipe_after_delete,
    storage_domain_static.discard_after_delete,
    storage_domain_static.first_metadata_device,
    storage_domain_static.vg_metadata_device,
    storage_domain_static.backup,
    storage_domain_static.block_size,
    coalesce(storage_domain_shared_status.status, 0) AS storage_domain_shared_status,
    storage_domain_static.recoverable,
    FALSE AS contains_unregistered_entities,
    storage_domain_static.warning_low_space_indicator,
    storage_domain_static.critical_space_action_blocker,
    storage_domain_static.warning_low_confirmed_space_indicator,
    storage_domain_dynamic.external_status,
    cast(NULL AS BOOLEAN) AS supports_discard,
    FALSE AS is_hosted_engine_storage
FROM storage_domain_static
INNER JOIN storage_domain_dynamic ON storage_domain_static.id = storage_domain_dynamic.id
LEFT JOIN storage_pool_iso_map ON storage_domain_static.id = storage_pool_iso_map.storage_id
LEFT JOIN storage_pool ON storage_pool_iso_map.storage_pool_id = storage_pool.id
LEFT JOIN storage_domains_image_sizes
    ON storage_domain_static.id = storage_domains_image_sizes.storage_domain_id
LEFT JOIN storage_domain_shared_status
    ON storage_domain_static.id = storage_domain_shared_status.storage_id;
