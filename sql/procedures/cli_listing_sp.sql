-- Read-only listings behind the operator's command line (movedisk disks, domains, verify).
-- STABLE functions that change nothing: they run on a primary, on a streaming replica, or in a
-- read-only transaction, as movedisk_dba or movedisk_engine.
-- A temporary (To_Be_Deleted) disk stands for a leftover on its source domain once the source
-- disk is no longer live there (IsImageGroupOnStorageDomain: after phase 3); before that the data
-- on the source domain is the live original (as GetImageToBeDeletedRemovalPlan decides).

-- GetDisksForListing: one row per disk with its status, placement, size, VMs, the template disk
-- it is based on and, for a temporary disk, the move it belongs to; v_temporary TRUE gives only
-- temporary disks, FALSE none of them, NULL every disk.
CREATE OR REPLACE FUNCTION GetDisksForListing(v_temporary BOOLEAN DEFAULT NULL)
RETURNS TABLE (
    disk_id UUID,
    disk_alias VARCHAR(255),
    imagestatus INTEGER,
    volumes INTEGER,
    storage_domain_ids UUID[],
    storage_domain_names TEXT[],
    storage_pool_id UUID,
    size BIGINT,
    actual_size BIGINT,
    wipe_after_delete BOOLEAN,
    vm_names TEXT[],
    template_disk_id UUID,
    template_alias VARCHAR(255),
    is_temporary BOOLEAN,
    src_image_group_id UUID,
    src_storage UUID,
    src_storage_name TEXT,
    dest_storage UUID,
    dest_storage_name TEXT,
    leftover_state TEXT,
    created TIMESTAMP WITH TIME ZONE
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        b.disk_id,
        b.disk_alias,
        leaf.imagestatus,
        vols.n,
        placement.ids,
        placement.names,
        placement.pool_id,
        leaf.size,
        vols.actual,
        b.wipe_after_delete,
        vms.names,
        tmpl.image_group_id,
        tmpl_disk.disk_alias,
        (t.image_id IS NOT NULL),
        t.src_image_group_id,
        t.src_storage,
        src_sd.storage_name::TEXT,
        t.dest_storage,
        dest_sd.storage_name::TEXT,
        CASE
            WHEN t.image_id IS NULL THEN NULL
            WHEN leaf.imagestatus = 2 THEN 'MOVE_IN_PROGRESS'
            WHEN public.IsImageGroupOnStorageDomain(t.src_image_group_id, t.src_storage)
                THEN 'ORIGINAL_ON_SOURCE'
            ELSE 'LEFTOVER_ON_SOURCE'
        END,
        coalesce(t._create_date, leaf.creation_date)
    FROM public.base_disks AS b
    LEFT JOIN LATERAL (
        SELECT i.image_guid, i.imagestatus, i.size, i.creation_date
        FROM public.images AS i
        WHERE i.image_group_id = b.disk_id
        ORDER BY i.active DESC, i.creation_date DESC, i.image_guid
        LIMIT 1
    ) AS leaf ON TRUE
    LEFT JOIN LATERAL (
        SELECT count(*)::INTEGER AS n, coalesce(sum(d.actual_size), 0)::BIGINT AS actual
        FROM public.images AS i
        LEFT JOIN public.disk_image_dynamic AS d ON i.image_guid = d.image_id
        WHERE i.image_group_id = b.disk_id
    ) AS vols ON TRUE
    LEFT JOIN LATERAL (
        SELECT
            array_agg(m.storage_domain_id ORDER BY s.storage_name, m.storage_domain_id) AS ids,
            array_agg(s.storage_name::TEXT ORDER BY s.storage_name, m.storage_domain_id) AS names,
            min(p.storage_pool_id::TEXT)::UUID AS pool_id
        FROM public.image_storage_domain_map AS m
        INNER JOIN public.storage_domain_static AS s ON m.storage_domain_id = s.id
        LEFT JOIN public.storage_pool_iso_map AS p ON m.storage_domain_id = p.storage_id
        WHERE m.image_id = leaf.image_guid
    ) AS placement ON TRUE
    LEFT JOIN LATERAL (
        SELECT array_agg(v.vm_name::TEXT ORDER BY v.vm_name) AS names
        FROM public.vm_device AS dev
        INNER JOIN public.vm_static AS v ON dev.vm_id = v.vm_guid
        WHERE dev.device_id = b.disk_id AND dev.device = 'disk'
    ) AS vms ON TRUE
    LEFT JOIN LATERAL (
        SELECT tb.*
        FROM public.images_to_be_deleted AS tb
        INNER JOIN public.images AS ti ON tb.image_id = ti.image_guid
        WHERE ti.image_group_id = b.disk_id
        ORDER BY ti.active DESC, tb.image_id
        LIMIT 1
    ) AS t ON TRUE
    LEFT JOIN LATERAL (
        SELECT ti.image_group_id
        FROM public.images AS i
        INNER JOIN public.images AS ti ON i.it_guid = ti.image_guid
        WHERE i.image_group_id = b.disk_id
          AND i.it_guid <> '00000000-0000-0000-0000-000000000000'::UUID
        LIMIT 1
    ) AS tmpl ON TRUE
    LEFT JOIN public.base_disks AS tmpl_disk ON tmpl.image_group_id = tmpl_disk.disk_id
    LEFT JOIN public.storage_domain_static AS src_sd ON t.src_storage = src_sd.id
    LEFT JOIN public.storage_domain_static AS dest_sd ON t.dest_storage = dest_sd.id
    WHERE v_temporary IS NULL OR (t.image_id IS NOT NULL) = v_temporary
    ORDER BY b.disk_alias, b.disk_id;
END;
$procedure$;
GRANT EXECUTE ON FUNCTION GetDisksForListing(BOOLEAN) TO movedisk_dba;

-- GetStorageDomainsForListing: one row per storage domain and data center it is attached to
-- (one with no data center for an unattached domain): status, space as the storage last
-- reported it (GB) and the bytes its disks, leftovers and copies in flight use.
CREATE OR REPLACE FUNCTION GetStorageDomainsForListing()
RETURNS TABLE (
    id UUID,
    storage_name VARCHAR(250),
    storage_pool_id UUID,
    storage_pool_name VARCHAR(40),
    status INTEGER,
    storage_domain_type INTEGER,
    storage_type INTEGER,
    available_disk_size INTEGER,
    used_disk_size INTEGER,
    used_bytes BIGINT,
    disk_bytes BIGINT,
    leftover_bytes BIGINT,
    in_flight_bytes BIGINT,
    volumes BIGINT,
    leftover_disks BIGINT
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        s.id,
        s.storage_name,
        p.storage_pool_id,
        sp.name,
        p.status,
        s.storage_domain_type,
        s.storage_type,
        dyn.available_disk_size,
        dyn.used_disk_size,
        u.used_bytes,
        u.disk_bytes,
        u.leftover_bytes,
        u.in_flight_bytes,
        u.volumes,
        coalesce(lo.disks, 0)
    FROM public.storage_domain_static AS s
    LEFT JOIN public.storage_domain_dynamic AS dyn ON s.id = dyn.id
    LEFT JOIN public.storage_pool_iso_map AS p ON s.id = p.storage_id
    LEFT JOIN public.storage_pool AS sp ON p.storage_pool_id = sp.id
    LEFT JOIN public.storage_domain_usage_view AS u ON s.id = u.storage_domain_id
    LEFT JOIN (
        SELECT li.storage_domain_id, count(DISTINCT li.image_group_id) AS disks
        FROM public.storage_usage_items_view AS li
        WHERE li.usage_kind = 'LEFTOVER'
        GROUP BY li.storage_domain_id
    ) AS lo ON s.id = lo.storage_domain_id
    ORDER BY s.storage_name, s.id, sp.name;
END;
$procedure$;
GRANT EXECUTE ON FUNCTION GetStorageDomainsForListing() TO movedisk_dba;

-- GetExpectedVolumesOnStorage: what the database says each storage domain holds, for a
-- comparison with the storage: DISK (a volume of a disk mapped there: must exist, intact),
-- LEFTOVER (the source copy of a moved disk recorded in images_to_be_deleted: should exist until
-- its deletion is confirmed), MOVE_SOURCE (the same while the move's end is running: its
-- temporary disk still LOCKED after phase 3, the agent deleting it: may exist), MOVE_COPY (the
-- destination copy of a move that has not switched: may exist, partly or whole) and
-- PENDING_DELETION (a whole image group the agent still has to
-- delete there, image_groups_to_be_deleted: may exist; image_id is NULL). "G is live on a
-- domain" is IsImageGroupOnStorageDomain, as everywhere in the package.
CREATE OR REPLACE FUNCTION GetExpectedVolumesOnStorage()
RETURNS TABLE (
    storage_domain_id UUID,
    image_group_id UUID,
    image_id UUID,
    kind TEXT,
    disk_alias VARCHAR(255),
    temporary_image_id UUID
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        m.storage_domain_id,
        i.image_group_id,
        m.image_id,
        'DISK'::TEXT,
        b.disk_alias,
        NULL::UUID
    FROM public.image_storage_domain_map AS m
    INNER JOIN public.images AS i ON m.image_id = i.image_guid
    LEFT JOIN public.base_disks AS b ON i.image_group_id = b.disk_id
    WHERE NOT EXISTS (SELECT 1 FROM public.images_to_be_deleted AS t WHERE t.image_id = m.image_id)
    UNION ALL
    SELECT
        t.src_storage,
        t.src_image_group_id,
        t.src_image_id,
        CASE WHEN tmp.imagestatus = 2 THEN 'MOVE_SOURCE' ELSE 'LEFTOVER' END,
        b.disk_alias,
        t.image_id
    FROM public.images_to_be_deleted AS t
    INNER JOIN public.images AS tmp ON t.image_id = tmp.image_guid
    LEFT JOIN public.base_disks AS b ON t.src_image_group_id = b.disk_id
    WHERE NOT public.IsImageGroupOnStorageDomain(t.src_image_group_id, t.src_storage)
    UNION ALL
    SELECT
        t.dest_storage,
        t.src_image_group_id,
        t.src_image_id,
        'MOVE_COPY'::TEXT,
        b.disk_alias,
        t.image_id
    FROM public.images_to_be_deleted AS t
    LEFT JOIN public.base_disks AS b ON t.src_image_group_id = b.disk_id
    WHERE NOT public.IsImageGroupOnStorageDomain(t.src_image_group_id, t.dest_storage)
    UNION ALL
    SELECT
        g.storage_domain_id,
        g.image_group_id,
        NULL::UUID,
        'PENDING_DELETION'::TEXT,
        b.disk_alias,
        NULL::UUID
    FROM public.image_groups_to_be_deleted AS g
    LEFT JOIN public.base_disks AS b ON g.image_group_id = b.disk_id
    WHERE NOT public.IsImageGroupOnStorageDomain(g.image_group_id, g.storage_domain_id)
    ORDER BY 1, 2, 3, 4;
END;
$procedure$;
GRANT EXECUTE ON FUNCTION GetExpectedVolumesOnStorage() TO movedisk_dba;

-- The DBA reads the audit log too (movedisk events as movedisk_dba, on a replica).
GRANT EXECUTE ON FUNCTION public.GetAuditLogLaterThenDate(TIMESTAMP WITH TIME ZONE) TO movedisk_dba;
