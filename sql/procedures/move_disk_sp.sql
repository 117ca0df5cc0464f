-- Move Disk Two Phase Commit: the database side of each phase, one transaction each.
-- Every function locks the rows it works on (FOR UPDATE) and refuses, changing nothing,
-- when its preconditions fail:
--   MD001 unknown disk, MD002 wrong / inactive / foreign domain or source = destination,
--   MD003 locked, already moving, or wrong status, MD006 not a temporary disk,
--   MD007 no room on the destination.
-- Image status codes are oVirt's: OK=1, LOCKED=2, ILLEGAL=4; a domain is Active (3) in
-- storage_pool_iso_map.status; storage_domain_dynamic.available_disk_size is in GB.

-- CreateTemporaryDiskForMove: phase 1 of moving disk v_image_group_id from v_src_storage to
-- v_dest_storage: validates, locks the disk's volumes, creates the LOCKED temporary disk
-- (alias suffix _To_Be_Deleted) on the source domain mirroring the chain, and one
-- images_to_be_deleted row per volume. Returns one row per volume: the temporary disk id and
-- the original -> temporary image mapping. With v_command_id, the compensation of the command
-- that runs the move is recorded in business_entity_snapshot (original volumes: their status,
-- CHANGED_STATUS_ONLY; temporary disk and volumes: NEW_ENTITY_ID), which ties the LOCKED volumes
-- to that command.
CREATE OR REPLACE FUNCTION CreateTemporaryDiskForMove(
    v_image_group_id UUID,
    v_src_storage UUID,
    v_dest_storage UUID,
    v_new_image_group_id UUID DEFAULT NULL,
    v_command_id UUID DEFAULT NULL
)
RETURNS TABLE (temporary_disk_id UUID, original_image_id UUID, temporary_image_id UUID)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_new_disk_id UUID := coalesce(v_new_image_group_id, gen_random_uuid());
    v_old_ids UUID[];
    v_new_ids UUID[];
    v_volumes INTEGER;
    v_on_src INTEGER;
    v_locked INTEGER;
    v_not_ok INTEGER;
    v_pool_id UUID;
    v_dest_status INTEGER;
    v_needed BIGINT;
    v_available BIGINT;
BEGIN
    -- The disk's volumes, locked: a concurrent move of the same disk waits here, then sees LOCKED.
    SELECT array_agg(i.image_guid ORDER BY i.image_guid)
    INTO v_old_ids
    FROM (
        SELECT img.image_guid
        FROM images AS img
        WHERE img.image_group_id = v_image_group_id
        ORDER BY img.image_guid
        FOR UPDATE
    ) AS i;
    IF v_old_ids IS NULL THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;
    IF EXISTS (
        SELECT 1 FROM images_to_be_deleted AS t WHERE t.image_id = ANY(v_old_ids)
    ) THEN
        RAISE EXCEPTION 'disk % is a temporary (To_Be_Deleted) disk; it cannot be moved',
            v_image_group_id USING ERRCODE = 'MD003';
    END IF;
    IF v_src_storage IS NOT DISTINCT FROM v_dest_storage THEN
        RAISE EXCEPTION 'source and destination storage domain are the same (%)', v_src_storage
            USING ERRCODE = 'MD002';
    END IF;

    SELECT
        count(*),
        count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM image_storage_domain_map AS m
            WHERE m.image_id = i.image_guid AND m.storage_domain_id = v_src_storage
        )),
        count(*) FILTER (WHERE i.imagestatus = 2),
        count(*) FILTER (WHERE i.imagestatus IS DISTINCT FROM 1),
        sum(CASE WHEN i.volume_type = 1 THEN i.size ELSE coalesce(d.actual_size, i.size) END)
    INTO v_volumes, v_on_src, v_locked, v_not_ok, v_needed
    FROM images AS i
    LEFT JOIN disk_image_dynamic AS d ON d.image_id = i.image_guid
    WHERE i.image_guid = ANY(v_old_ids);

    IF v_on_src < v_volumes THEN
        RAISE EXCEPTION 'disk % is not on storage domain % (% of its % volumes are)',
            v_image_group_id, v_src_storage, v_on_src, v_volumes USING ERRCODE = 'MD002';
    END IF;
    IF v_locked > 0 THEN
        RAISE EXCEPTION 'disk % is locked (% of its volumes)', v_image_group_id, v_locked
            USING ERRCODE = 'MD003';
    END IF;
    IF v_not_ok > 0 THEN
        RAISE EXCEPTION 'disk % is not OK (% of its volumes are not)', v_image_group_id, v_not_ok
            USING ERRCODE = 'MD003';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM images_to_be_deleted AS t
        INNER JOIN images AS tmp ON tmp.image_guid = t.image_id
        WHERE t.src_image_group_id = v_image_group_id AND tmp.imagestatus = 2
    ) THEN
        RAISE EXCEPTION 'disk % is already moving', v_image_group_id USING ERRCODE = 'MD003';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM images_to_be_deleted AS t
        WHERE t.src_image_group_id = v_image_group_id AND t.src_storage = v_dest_storage
    ) THEN
        RAISE EXCEPTION 'a leftover of disk % is still on storage domain %; remove it first',
            v_image_group_id, v_dest_storage USING ERRCODE = 'MD003';
    END IF;

    SELECT p.storage_pool_id INTO v_pool_id
    FROM storage_pool_iso_map AS p
    WHERE p.storage_id = v_src_storage;
    IF v_pool_id IS NULL THEN
        RAISE EXCEPTION 'source storage domain % is not attached to a storage pool', v_src_storage
            USING ERRCODE = 'MD002';
    END IF;
    SELECT p.status INTO v_dest_status
    FROM storage_pool_iso_map AS p
    WHERE p.storage_id = v_dest_storage AND p.storage_pool_id = v_pool_id;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM storage_domain_static AS s WHERE s.id = v_dest_storage) THEN
            RAISE EXCEPTION 'storage domain % is not in storage pool % of the disk',
                v_dest_storage, v_pool_id USING ERRCODE = 'MD002';
        END IF;
        RAISE EXCEPTION 'no storage domain has id %', v_dest_storage USING ERRCODE = 'MD002';
    END IF;
    IF v_dest_status IS DISTINCT FROM 3 THEN
        RAISE EXCEPTION 'storage domain % is not active (status %)', v_dest_storage,
            coalesce(v_dest_status::TEXT, 'unknown') USING ERRCODE = 'MD002';
    END IF;
    SELECT dyn.available_disk_size::BIGINT * 1073741824 INTO v_available
    FROM storage_domain_dynamic AS dyn
    WHERE dyn.id = v_dest_storage;
    IF coalesce(v_available, 0) < v_needed THEN
        RAISE EXCEPTION 'storage domain % has % bytes free, disk % needs %', v_dest_storage,
            coalesce(v_available, 0), v_image_group_id, v_needed USING ERRCODE = 'MD007';
    END IF;

    -- Phase 1 proper.
    SELECT array_agg(gen_random_uuid()) INTO v_new_ids FROM unnest(v_old_ids);

    UPDATE images AS i
    SET imagestatus = 2, _update_date = now()
    WHERE i.image_guid = ANY(v_old_ids);

    INSERT INTO base_disks
    SELECT r.*
    FROM base_disks AS b
    CROSS JOIN LATERAL jsonb_populate_record(
        NULL::base_disks,
        to_jsonb(b) || jsonb_build_object(
            'disk_id', v_new_disk_id,
            'disk_alias', left(coalesce(b.disk_alias, ''), 241) || '_To_Be_Deleted'
        )
    ) AS r
    WHERE b.disk_id = v_image_group_id;

    INSERT INTO images
    SELECT r.*
    FROM images AS i
    INNER JOIN unnest(v_old_ids, v_new_ids) AS mp (old_id, new_id) ON mp.old_id = i.image_guid
    LEFT JOIN unnest(v_old_ids, v_new_ids) AS pm (old_id, new_id) ON pm.old_id = i.parentid
    CROSS JOIN LATERAL jsonb_populate_record(
        NULL::images,
        to_jsonb(i) || jsonb_build_object(
            'image_guid', mp.new_id,
            'image_group_id', v_new_disk_id,
            'parentid', coalesce(pm.new_id, i.parentid),
            'imagestatus', 2,
            'vm_snapshot_id', NULL,
            '_create_date', now(),
            '_update_date', NULL
        )
    ) AS r;

    INSERT INTO disk_image_dynamic
    SELECT r.*
    FROM disk_image_dynamic AS d
    INNER JOIN unnest(v_old_ids, v_new_ids) AS mp (old_id, new_id) ON mp.old_id = d.image_id
    CROSS JOIN LATERAL jsonb_populate_record(
        NULL::disk_image_dynamic,
        to_jsonb(d) || jsonb_build_object('image_id', mp.new_id)
    ) AS r;

    INSERT INTO image_storage_domain_map
    SELECT r.*
    FROM image_storage_domain_map AS m
    INNER JOIN unnest(v_old_ids, v_new_ids) AS mp (old_id, new_id) ON mp.old_id = m.image_id
    CROSS JOIN LATERAL jsonb_populate_record(
        NULL::image_storage_domain_map,
        to_jsonb(m) || jsonb_build_object('image_id', mp.new_id)
    ) AS r
    WHERE m.storage_domain_id = v_src_storage;

    INSERT INTO images_to_be_deleted (
        image_id, src_image_id, src_image_group_id, src_storage, dest_storage
    )
    SELECT mp.new_id, mp.old_id, v_image_group_id, v_src_storage, v_dest_storage
    FROM unnest(v_old_ids, v_new_ids) AS mp (old_id, new_id);

    IF v_command_id IS NOT NULL THEN
        INSERT INTO business_entity_snapshot (
            id, command_id, command_type, entity_id, entity_type, entity_snapshot,
            snapshot_class, snapshot_type, insertion_order
        )
        SELECT
            gen_random_uuid(), v_command_id, 'MoveOrCopyDisk', e.entity_id, e.entity_type,
            e.entity_snapshot, e.snapshot_class, e.snapshot_type, e.ord::INTEGER
        FROM (
            SELECT mp.old_id::TEXT AS entity_id, 'Image' AS entity_type, '1' AS entity_snapshot,
                'org.ovirt.engine.core.common.businessentities.ImageStatus' AS snapshot_class,
                2 AS snapshot_type, mp.ord
            FROM unnest(v_old_ids) WITH ORDINALITY AS mp (old_id, ord)
            UNION ALL
            SELECT v_new_disk_id::TEXT, 'BaseDisk', NULL, NULL, 1, 0
            UNION ALL
            SELECT mp.new_id::TEXT, 'Image', NULL, NULL, 1, 1000 + mp.ord
            FROM unnest(v_new_ids) WITH ORDINALITY AS mp (new_id, ord)
        ) AS e;
    END IF;

    RETURN QUERY
    SELECT v_new_disk_id, mp.old_id, mp.new_id
    FROM unnest(v_old_ids, v_new_ids) AS mp (old_id, new_id);
END;
$procedure$;

-- UpdateImageGroupStorageDomain: phase 3: maps every volume of disk v_image_group_id from
-- v_src_storage to v_dest_storage and unlocks it (OK), once the copy succeeded. Requires the
-- pending move (LOCKED temporary disk) recorded by phase 1. Returns the volumes re-mapped;
-- 0 when phase 3 already committed (a repeated call changes nothing).
CREATE OR REPLACE FUNCTION UpdateImageGroupStorageDomain(
    v_image_group_id UUID,
    v_src_storage UUID,
    v_dest_storage UUID
)
RETURNS INTEGER
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_volumes INTEGER;
    v_on_src INTEGER;
    v_on_dest INTEGER;
    v_tmp_locked INTEGER;
    v_tmp_other INTEGER;
    v_moved INTEGER;
BEGIN
    PERFORM 1
    FROM images AS i
    WHERE i.image_group_id = v_image_group_id
    ORDER BY i.image_guid
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;

    SELECT
        count(*) FILTER (WHERE tmp.imagestatus = 2),
        count(*) FILTER (WHERE tmp.imagestatus IS DISTINCT FROM 2)
    INTO v_tmp_locked, v_tmp_other
    FROM images_to_be_deleted AS t
    INNER JOIN images AS tmp ON tmp.image_guid = t.image_id
    WHERE t.src_image_group_id = v_image_group_id
      AND t.src_storage = v_src_storage
      AND t.dest_storage = v_dest_storage;
    IF v_tmp_locked = 0 THEN
        IF v_tmp_other > 0 THEN
            RAISE EXCEPTION 'the move of disk % from % to % already ended (temporary disk is '
                'not LOCKED)', v_image_group_id, v_src_storage, v_dest_storage
                USING ERRCODE = 'MD003';
        END IF;
        RAISE EXCEPTION 'no move of disk % from % to % is pending', v_image_group_id,
            v_src_storage, v_dest_storage USING ERRCODE = 'MD003';
    END IF;

    SELECT
        count(*),
        count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM image_storage_domain_map AS m
            WHERE m.image_id = i.image_guid AND m.storage_domain_id = v_src_storage
        )),
        count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM image_storage_domain_map AS m
            WHERE m.image_id = i.image_guid AND m.storage_domain_id = v_dest_storage
        ))
    INTO v_volumes, v_on_src, v_on_dest
    FROM images AS i
    WHERE i.image_group_id = v_image_group_id;

    IF v_on_dest = v_volumes AND v_on_src = 0 THEN
        RETURN 0;
    END IF;
    IF v_on_src < v_volumes OR v_on_dest > 0 THEN
        RAISE EXCEPTION 'disk % is not wholly on storage domain % (% of % volumes)',
            v_image_group_id, v_src_storage, v_on_src, v_volumes USING ERRCODE = 'MD002';
    END IF;

    UPDATE image_storage_domain_map AS m
    SET storage_domain_id = v_dest_storage
    FROM images AS i
    WHERE i.image_guid = m.image_id
      AND i.image_group_id = v_image_group_id
      AND m.storage_domain_id = v_src_storage;
    GET DIAGNOSTICS v_moved = ROW_COUNT;

    UPDATE images AS i
    SET imagestatus = 1, _update_date = now()
    WHERE i.image_group_id = v_image_group_id AND i.imagestatus = 2;

    RETURN v_moved;
END;
$procedure$;

-- MarkTemporaryDiskIllegal: temporary disk v_image_group_id goes ILLEGAL (it records a leftover
-- or a failed move; compensation never drops it silently); with v_unlock_original the original
-- disk's LOCKED volumes go back to OK. Returns the temporary volumes marked.
CREATE OR REPLACE FUNCTION MarkTemporaryDiskIllegal(
    v_image_group_id UUID,
    v_unlock_original BOOLEAN DEFAULT FALSE
)
RETURNS INTEGER
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_tmp_ids UUID[];
    v_src_group_ids UUID[];
    v_marked INTEGER;
BEGIN
    SELECT array_agg(i.image_guid)
    INTO v_tmp_ids
    FROM (
        SELECT img.image_guid
        FROM images AS img
        WHERE img.image_group_id = v_image_group_id
        ORDER BY img.image_guid
        FOR UPDATE
    ) AS i;
    IF v_tmp_ids IS NULL THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;
    SELECT array_agg(DISTINCT t.src_image_group_id)
    INTO v_src_group_ids
    FROM images_to_be_deleted AS t
    WHERE t.image_id = ANY(v_tmp_ids);
    IF v_src_group_ids IS NULL THEN
        RAISE EXCEPTION 'disk % is not a temporary (To_Be_Deleted) disk', v_image_group_id
            USING ERRCODE = 'MD006';
    END IF;

    UPDATE images AS i
    SET imagestatus = 4, _update_date = now()
    WHERE i.image_guid = ANY(v_tmp_ids);
    GET DIAGNOSTICS v_marked = ROW_COUNT;

    IF v_unlock_original THEN
        UPDATE images AS i
        SET imagestatus = 1, _update_date = now()
        WHERE i.image_group_id = ANY(v_src_group_ids) AND i.imagestatus = 2;
    END IF;
    RETURN v_marked;
END;
$procedure$;

-- RemoveTemporaryDisk: the database side of removing temporary disk v_image_group_id: its
-- images_to_be_deleted rows, volumes, mappings and disk row. When the source disk left the
-- source domain (plan STORAGE_AND_DB) the caller passes v_storage_deleted => TRUE once the agent
-- deleted the leftover there. Refuses a temporary disk of a move still in flight (LOCKED while
-- the original is on the source domain: compensate first). Returns the volumes removed.
CREATE OR REPLACE FUNCTION RemoveTemporaryDisk(
    v_image_group_id UUID,
    v_storage_deleted BOOLEAN DEFAULT FALSE
)
RETURNS INTEGER
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_tmp_ids UUID[];
    v_rows INTEGER;
    v_locked INTEGER;
    v_live_original BOOLEAN;
    v_removed INTEGER;
BEGIN
    SELECT array_agg(i.image_guid)
    INTO v_tmp_ids
    FROM (
        SELECT img.image_guid
        FROM images AS img
        WHERE img.image_group_id = v_image_group_id
        ORDER BY img.image_guid
        FOR UPDATE
    ) AS i;
    IF v_tmp_ids IS NULL THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;
    SELECT
        count(*),
        count(*) FILTER (WHERE tmp.imagestatus = 2),
        coalesce(bool_or(EXISTS (
            SELECT 1
            FROM images AS src
            INNER JOIN image_storage_domain_map AS m
                ON m.image_id = src.image_guid AND m.storage_domain_id = t.src_storage
            WHERE src.image_group_id = t.src_image_group_id
        )), FALSE)
    INTO v_rows, v_locked, v_live_original
    FROM images_to_be_deleted AS t
    INNER JOIN images AS tmp ON tmp.image_guid = t.image_id
    WHERE t.image_id = ANY(v_tmp_ids);
    IF v_rows = 0 THEN
        RAISE EXCEPTION 'disk % is not a temporary (To_Be_Deleted) disk', v_image_group_id
            USING ERRCODE = 'MD006';
    END IF;
    IF v_live_original AND v_locked > 0 THEN
        RAISE EXCEPTION 'temporary disk % belongs to a move still in flight; mark it ILLEGAL '
            '(compensate) first', v_image_group_id USING ERRCODE = 'MD003';
    END IF;
    IF NOT v_live_original AND NOT coalesce(v_storage_deleted, FALSE) THEN
        RAISE EXCEPTION 'the leftover of temporary disk % must be deleted on its source domain '
            'first (removal plan STORAGE_AND_DB)', v_image_group_id USING ERRCODE = 'MD003';
    END IF;

    DELETE FROM images_to_be_deleted AS t WHERE t.image_id = ANY(v_tmp_ids);
    DELETE FROM image_storage_domain_map AS m WHERE m.image_id = ANY(v_tmp_ids);
    DELETE FROM disk_image_dynamic AS d WHERE d.image_id = ANY(v_tmp_ids);
    DELETE FROM images AS i WHERE i.image_guid = ANY(v_tmp_ids);
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    DELETE FROM base_disks AS b WHERE b.disk_id = v_image_group_id;
    RETURN v_removed;
END;
$procedure$;

-- GetAllTemporaryDisks: one row per temporary disk: its source disk and domains, its status and
-- the original's, and whether the original is still on the source domain (the storage match).
CREATE OR REPLACE FUNCTION GetAllTemporaryDisks()
RETURNS TABLE (
    temporary_disk_id UUID,
    src_image_group_id UUID,
    src_storage UUID,
    dest_storage UUID,
    temporary_status INTEGER,
    original_status INTEGER,
    original_on_src_storage BOOLEAN,
    volumes BIGINT,
    created TIMESTAMPTZ
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        tmp.image_group_id,
        t.src_image_group_id,
        t.src_storage,
        t.dest_storage,
        max(tmp.imagestatus),
        (SELECT max(o.imagestatus) FROM images AS o WHERE o.image_group_id = t.src_image_group_id),
        EXISTS (
            SELECT 1
            FROM images AS src
            INNER JOIN image_storage_domain_map AS m
                ON m.image_id = src.image_guid AND m.storage_domain_id = t.src_storage
            WHERE src.image_group_id = t.src_image_group_id
        ),
        count(*),
        min(t._create_date)
    FROM images_to_be_deleted AS t
    INNER JOIN images AS tmp ON tmp.image_guid = t.image_id
    GROUP BY tmp.image_group_id, t.src_image_group_id, t.src_storage, t.dest_storage
    ORDER BY min(t._create_date);
END;
$procedure$;
