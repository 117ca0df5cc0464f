-- Storage usage with disk moves in the picture (the specification's open question on quota):
--   * a leftover (a temporary image whose source left the source domain) counts once,
--     against its source domain;
--   * a disk in flight (phase 1 done, phase 3 not yet) counts on both domains: the original on
--     the source, the copy being written on the destination;
--   * no byte counts twice on one domain: while the original disk is live on the source
--     domain (any of its volumes mapped there: IsImageGroupOnStorageDomain, the definition the
--     storage-match procedure answers by), the temporary image there is its shadow and counts
--     nothing.
-- Bytes follow oVirt's quota rule (CalculateStorageUsage): an active volume counts its
-- virtual size, any other volume its actual size (disk_image_dynamic).

-- storage_usage_items_view: one row per volume and storage domain that uses space there.
CREATE OR REPLACE VIEW storage_usage_items_view AS
SELECT
    m.image_id,
    i.image_group_id,
    m.storage_domain_id,
    m.quota_id,
    CASE WHEN t.image_id IS NULL THEN 'DISK' ELSE 'LEFTOVER' END AS usage_kind,
    CASE WHEN i.active THEN i.size ELSE coalesce(d.actual_size, 0) END AS used_bytes,
    coalesce(d.actual_size, 0) AS actual_bytes
FROM image_storage_domain_map AS m
INNER JOIN images AS i ON m.image_id = i.image_guid
LEFT JOIN disk_image_dynamic AS d ON m.image_id = d.image_id
LEFT JOIN images_to_be_deleted AS t ON m.image_id = t.image_id
WHERE
    t.image_id IS NULL
    OR m.storage_domain_id <> t.src_storage
    OR NOT EXISTS (
        SELECT 1
        FROM images AS si
        INNER JOIN image_storage_domain_map AS sm ON si.image_guid = sm.image_id
        WHERE si.image_group_id = t.src_image_group_id AND sm.storage_domain_id = t.src_storage
    )
UNION ALL
SELECT
    t.src_image_id AS image_id,
    t.src_image_group_id AS image_group_id,
    t.dest_storage AS storage_domain_id,
    sm.quota_id,
    'COPY_IN_FLIGHT' AS usage_kind,
    CASE WHEN src.active THEN src.size ELSE coalesce(d.actual_size, 0) END AS used_bytes,
    coalesce(d.actual_size, 0) AS actual_bytes
FROM images_to_be_deleted AS t
INNER JOIN images AS tmp ON t.image_id = tmp.image_guid AND tmp.imagestatus = 2
INNER JOIN images AS src ON t.src_image_id = src.image_guid
INNER JOIN image_storage_domain_map AS sm
    ON t.src_image_id = sm.image_id AND t.src_storage = sm.storage_domain_id
LEFT JOIN disk_image_dynamic AS d ON t.src_image_id = d.image_id
WHERE NOT EXISTS (
    SELECT 1
    FROM image_storage_domain_map AS dm
    WHERE dm.image_id = t.src_image_id AND dm.storage_domain_id = t.dest_storage
);

-- storage_domain_usage_view: per storage domain, the bytes its disks, leftovers and copies in
-- flight use (every domain, zeros included).
CREATE OR REPLACE VIEW storage_domain_usage_view AS
SELECT
    s.id AS storage_domain_id,
    s.storage_name,
    coalesce(sum(u.used_bytes), 0)::BIGINT AS used_bytes,
    coalesce(sum(u.actual_bytes), 0)::BIGINT AS actual_bytes,
    coalesce(sum(u.used_bytes) FILTER (WHERE u.usage_kind = 'DISK'), 0)::BIGINT AS disk_bytes,
    coalesce(sum(u.used_bytes) FILTER (WHERE u.usage_kind = 'LEFTOVER'), 0)::BIGINT
        AS leftover_bytes,
    coalesce(sum(u.used_bytes) FILTER (WHERE u.usage_kind = 'COPY_IN_FLIGHT'), 0)::BIGINT
        AS in_flight_bytes,
    count(u.image_id) AS volumes
FROM storage_domain_static AS s
LEFT JOIN storage_usage_items_view AS u ON s.id = u.storage_domain_id
GROUP BY s.id, s.storage_name;

-- quota_storage_usage_view: per quota and storage domain, the bytes charged to the quota there
-- (with the quota's limit on that domain, in GB as in quota_limitation, when it has one).
CREATE OR REPLACE VIEW quota_storage_usage_view AS
SELECT
    u.quota_id,
    q.quota_name,
    q.storage_pool_id,
    u.storage_domain_id AS storage_id,
    (
        SELECT max(l.storage_size_gb)
        FROM quota_limitation AS l
        WHERE l.quota_id = u.quota_id AND l.storage_id = u.storage_domain_id
    ) AS storage_size_gb,
    sum(u.used_bytes)::BIGINT AS used_bytes,
    coalesce(sum(u.used_bytes) FILTER (WHERE u.usage_kind = 'DISK'), 0)::BIGINT AS disk_bytes,
    coalesce(sum(u.used_bytes) FILTER (WHERE u.usage_kind = 'LEFTOVER'), 0)::BIGINT
        AS leftover_bytes,
    coalesce(sum(u.used_bytes) FILTER (WHERE u.usage_kind = 'COPY_IN_FLIGHT'), 0)::BIGINT
        AS in_flight_bytes
FROM storage_usage_items_view AS u
INNER JOIN quota AS q ON u.quota_id = q.id
GROUP BY u.quota_id, q.quota_name, q.storage_pool_id, u.storage_domain_id;

-- quota_usage_view: per quota, the bytes charged to it on all domains together.
CREATE OR REPLACE VIEW quota_usage_view AS
SELECT
    q.id AS quota_id,
    q.quota_name,
    q.storage_pool_id,
    coalesce(sum(u.used_bytes), 0)::BIGINT AS used_bytes,
    coalesce(sum(u.used_bytes) FILTER (WHERE u.usage_kind = 'LEFTOVER'), 0)::BIGINT
        AS leftover_bytes,
    coalesce(sum(u.used_bytes) FILTER (WHERE u.usage_kind = 'COPY_IN_FLIGHT'), 0)::BIGINT
        AS in_flight_bytes
FROM quota AS q
LEFT JOIN storage_usage_items_view AS u ON q.id = u.quota_id
GROUP BY q.id, q.quota_name, q.storage_pool_id;
