-- Move Disk Two Phase Commit: the database side of each phase, one transaction each.
-- Safe in any order callers run them (several engine processes, recovery, a DBA):
-- - One lock order everywhere: the original disk's volumes (images rows, by image_guid), then
--   the temporary disks' volumes (by image_guid), then image_groups_to_be_deleted rows. Every
--   function takes its locks before it reads what it decides on, so a concurrent call waits
--   for the first to commit and then decides on what that one left.
-- - Each refuses, changing nothing, unless the state is the one it acts on:
--   MD001 unknown disk (also: a temporary disk already removed), MD002 wrong / inactive /
--   foreign domain or source = destination, MD003 cannot happen in this state (locked, already
--   moving, phase 3 committed or not), MD006 not a temporary disk, MD007 no room.
-- - A repeat of a call that already happened returns 0 (nothing changed); a first call returns
--   the number of volumes it changed (> 0). Callers run them in READ COMMITTED (the default).
-- "The disk is live on domain X" is IsImageGroupOnStorageDomain (images_to_be_deleted_sp.sql).
-- Image status codes are oVirt's: OK=1, LOCKED=2, ILLEGAL=4; a domain is Active (3) in
-- storage_pool_iso_map.status; storage_domain_dynamic.available_disk_size is in GB.

-- CreateTemporaryDiskForMove: phase 1 of moving disk v_image_group_id from v_src_storage to
-- v_dest_storage: validates, locks the disk's volumes, creates the LOCKED temporary disk
-- (alias suffix _To_Be_Deleted) on the source domain mirroring the chain, and one
-- images_to_be_deleted row per volume. Returns one row per volume: the temporary disk id and
-- the original -> temporary image mapping; no row when phase 1 of this very move (the same
-- v_new_image_group_id, disk and domains) already committed, so that a retry is safe. With
-- v_command_id, the compensation of the command that runs the move is recorded in
-- business_entity_snapshot (original volumes: their status, CHANGED_STATUS_ONLY; temporary disk
-- and volumes: NEW_ENTITY_ID), which ties the LOCKED volumes to that command.
CREATE OR REPLACE FUNCTION CreateTemporaryDiskForMove(
    v_image_group_id UUID,
    v_src_storage UUID,
    v_dest_storage UUID,
    v_new_image_group_id UUID DEFAULT NULL,
    v_command_id UUID DEFAULT NULL
)
RETURNS TABLE (temporary_disk_id UUID, original_image_id UUID, temporary_image_id UUID)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
        FROM public.images AS img
        WHERE img.image_group_id = v_image_group_id
        ORDER BY img.image_guid
        FOR UPDATE
    ) AS i;
    IF v_old_ids IS NULL THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;
    -- Then the volumes of its temporary disks (earlier moves), whose status says "moving".
    PERFORM 1
    FROM public.images AS tmp
    WHERE tmp.image_guid IN (
        SELECT t.image_id FROM public.images_to_be_deleted AS t
        WHERE t.src_image_group_id = v_image_group_id
    )
    ORDER BY tmp.image_guid
    FOR UPDATE;
    -- A repeat with the same v_new_image_group_id (a retry after a crash): already done.
    IF v_new_image_group_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM public.base_disks AS b WHERE b.disk_id = v_new_image_group_id
    ) THEN
        IF EXISTS (
            SELECT 1
            FROM public.images AS tmp
            INNER JOIN public.images_to_be_deleted AS t ON t.image_id = tmp.image_guid
            WHERE tmp.image_group_id = v_new_image_group_id
              AND t.src_image_group_id = v_image_group_id
              AND t.src_storage = v_src_storage
              AND t.dest_storage = v_dest_storage
        ) THEN
            RETURN;  -- phase 1 of this move already committed: no row
        END IF;
        RAISE EXCEPTION 'a disk with id % already exists', v_new_image_group_id
            USING ERRCODE = 'MD003';
    END IF;
    IF EXISTS (
        SELECT 1 FROM public.images_to_be_deleted AS t WHERE t.image_id = ANY(v_old_ids)
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
            SELECT 1 FROM public.image_storage_domain_map AS m
            WHERE m.image_id = i.image_guid AND m.storage_domain_id = v_src_storage
        )),
        count(*) FILTER (WHERE i.imagestatus = 2),
        count(*) FILTER (WHERE i.imagestatus IS DISTINCT FROM 1),
        sum(CASE WHEN i.volume_type = 1 THEN i.size ELSE coalesce(d.actual_size, i.size) END)
    INTO v_volumes, v_on_src, v_locked, v_not_ok, v_needed
    FROM public.images AS i
    LEFT JOIN public.disk_image_dynamic AS d ON d.image_id = i.image_guid
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
        FROM public.images_to_be_deleted AS t
        INNER JOIN public.images AS tmp ON tmp.image_guid = t.image_id
        WHERE t.src_image_group_id = v_image_group_id AND tmp.imagestatus = 2
    ) THEN
        RAISE EXCEPTION 'disk % is already moving', v_image_group_id USING ERRCODE = 'MD003';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM public.images_to_be_deleted AS t
        WHERE t.src_image_group_id = v_image_group_id AND t.src_storage = v_dest_storage
    ) THEN
        RAISE EXCEPTION 'a leftover of disk % is still on storage domain %; remove it first',
            v_image_group_id, v_dest_storage USING ERRCODE = 'MD003';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM public.image_groups_to_be_deleted AS g
        WHERE g.image_group_id = v_image_group_id AND g.storage_domain_id = v_dest_storage
    ) THEN
        RAISE EXCEPTION 'a copy of disk % left by a failed move is still to be deleted on storage '
            'domain %; clean it up first', v_image_group_id, v_dest_storage USING ERRCODE = 'MD003';
    END IF;

    SELECT p.storage_pool_id INTO v_pool_id
    FROM public.storage_pool_iso_map AS p
    WHERE p.storage_id = v_src_storage;
    IF v_pool_id IS NULL THEN
        RAISE EXCEPTION 'source storage domain % is not attached to a storage pool', v_src_storage
            USING ERRCODE = 'MD002';
    END IF;
    SELECT p.status INTO v_dest_status
    FROM public.storage_pool_iso_map AS p
    WHERE p.storage_id = v_dest_storage AND p.storage_pool_id = v_pool_id;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM public.storage_domain_static AS s WHERE s.id = v_dest_storage) THEN
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
    FROM public.storage_domain_dynamic AS dyn
    WHERE dyn.id = v_dest_storage;
    IF coalesce(v_available, 0) < v_needed THEN
        RAISE EXCEPTION 'storage domain % has % bytes free, disk % needs %', v_dest_storage,
            coalesce(v_available, 0), v_image_group_id, v_needed USING ERRCODE = 'MD007';
    END IF;

    -- Phase 1 proper.
    SELECT array_agg(gen_random_uuid()) INTO v_new_ids FROM unnest(v_old_ids);

    UPDATE public.images AS i
    SET imagestatus = 2, _update_date = now()
    WHERE i.image_guid = ANY(v_old_ids);

    INSERT INTO public.base_disks
    SELECT r.*
    FROM public.base_disks AS b
    CROSS JOIN LATERAL jsonb_populate_record(
        b,
        jsonb_build_object(
            'disk_id', v_new_disk_id,
            'disk_alias', left(coalesce(b.disk_alias, ''), 241) || '_To_Be_Deleted'
        )
    ) AS r
    WHERE b.disk_id = v_image_group_id;

    INSERT INTO public.images
    SELECT r.*
    FROM public.images AS i
    INNER JOIN unnest(v_old_ids, v_new_ids) AS mp (old_id, new_id) ON mp.old_id = i.image_guid
    LEFT JOIN unnest(v_old_ids, v_new_ids) AS pm (old_id, new_id) ON pm.old_id = i.parentid
    CROSS JOIN LATERAL jsonb_populate_record(
        i,
        jsonb_build_object(
            'image_guid', mp.new_id,
            'image_group_id', v_new_disk_id,
            'parentid', coalesce(pm.new_id, i.parentid),
            'imagestatus', 2,
            'vm_snapshot_id', NULL,
            '_create_date', now(),
            '_update_date', NULL
        )
    ) AS r;

    INSERT INTO public.disk_image_dynamic
    SELECT r.*
    FROM public.disk_image_dynamic AS d
    INNER JOIN unnest(v_old_ids, v_new_ids) AS mp (old_id, new_id) ON mp.old_id = d.image_id
    CROSS JOIN LATERAL jsonb_populate_record(d, jsonb_build_object('image_id', mp.new_id)) AS r;

    INSERT INTO public.image_storage_domain_map
    SELECT r.*
    FROM public.image_storage_domain_map AS m
    INNER JOIN unnest(v_old_ids, v_new_ids) AS mp (old_id, new_id) ON mp.old_id = m.image_id
    CROSS JOIN LATERAL jsonb_populate_record(m, jsonb_build_object('image_id', mp.new_id)) AS r
    WHERE m.storage_domain_id = v_src_storage;

    INSERT INTO public.images_to_be_deleted (
        image_id, src_image_id, src_image_group_id, src_storage, dest_storage
    )
    SELECT mp.new_id, mp.old_id, v_image_group_id, v_src_storage, v_dest_storage
    FROM unnest(v_old_ids, v_new_ids) AS mp (old_id, new_id);

    IF v_command_id IS NOT NULL THEN
        INSERT INTO public.business_entity_snapshot (
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

-- UpdateImageGroupStorageDomain: phase 3 of the move of disk v_image_group_id from v_src_storage
-- to v_dest_storage, once the copy succeeded: every volume mapped to the destination, the disk
-- unlocked (OK). Only while this move's temporary disk is LOCKED and the disk is wholly on the
-- source and LOCKED; MD003 otherwise (the move was compensated, or none is pending). Returns the
-- volumes re-mapped; 0 when phase 3 already committed (the disk wholly on the destination,
-- unlocked, its temporary disk still there): a repeat changes nothing.
CREATE OR REPLACE FUNCTION UpdateImageGroupStorageDomain(
    v_image_group_id UUID,
    v_src_storage UUID,
    v_dest_storage UUID
)
RETURNS INTEGER
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_volumes INTEGER;
    v_on_src INTEGER;
    v_on_dest INTEGER;
    v_locked INTEGER;
    v_tmp_locked INTEGER;
    v_tmp_other INTEGER;
    v_moved INTEGER;
BEGIN
    -- Lock order: the disk's volumes, then its temporary disks' volumes.
    PERFORM 1
    FROM public.images AS i
    WHERE i.image_group_id = v_image_group_id
    ORDER BY i.image_guid
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;
    PERFORM 1
    FROM public.images AS tmp
    WHERE tmp.image_guid IN (
        SELECT t.image_id FROM public.images_to_be_deleted AS t
        WHERE t.src_image_group_id = v_image_group_id
    )
    ORDER BY tmp.image_guid
    FOR UPDATE;

    SELECT
        count(*) FILTER (WHERE tmp.imagestatus = 2),
        count(*) FILTER (WHERE tmp.imagestatus IS DISTINCT FROM 2)
    INTO v_tmp_locked, v_tmp_other
    FROM public.images_to_be_deleted AS t
    INNER JOIN public.images AS tmp ON tmp.image_guid = t.image_id
    WHERE t.src_image_group_id = v_image_group_id
      AND t.src_storage = v_src_storage
      AND t.dest_storage = v_dest_storage;

    SELECT
        count(*),
        count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM public.image_storage_domain_map AS m
            WHERE m.image_id = i.image_guid AND m.storage_domain_id = v_src_storage
        )),
        count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM public.image_storage_domain_map AS m
            WHERE m.image_id = i.image_guid AND m.storage_domain_id = v_dest_storage
        )),
        count(*) FILTER (WHERE i.imagestatus = 2)
    INTO v_volumes, v_on_src, v_on_dest, v_locked
    FROM public.images AS i
    WHERE i.image_group_id = v_image_group_id;

    IF v_on_dest = v_volumes AND v_on_src = 0 AND v_locked = 0
       AND v_tmp_locked + v_tmp_other > 0 THEN
        RETURN 0;  -- phase 3 already committed
    END IF;
    IF v_tmp_locked = 0 THEN
        IF v_tmp_other > 0 AND v_on_src > 0 THEN
            RAISE EXCEPTION 'the move of disk % from % to % already ended with failure (it was '
                'compensated: its temporary disk is ILLEGAL); phase 3 cannot commit',
                v_image_group_id, v_src_storage, v_dest_storage USING ERRCODE = 'MD003';
        END IF;
        IF v_tmp_other > 0 THEN
            RAISE EXCEPTION 'the move of disk % from % to % already ended (its temporary disk is '
                'not LOCKED) and the disk is no longer on %', v_image_group_id, v_src_storage,
                v_dest_storage, v_src_storage USING ERRCODE = 'MD003';
        END IF;
        RAISE EXCEPTION 'no move of disk % from % to % is pending', v_image_group_id,
            v_src_storage, v_dest_storage USING ERRCODE = 'MD003';
    END IF;
    IF v_on_src < v_volumes OR v_on_dest > 0 THEN
        RAISE EXCEPTION 'disk % is not wholly on storage domain % (% of % volumes, % on %)',
            v_image_group_id, v_src_storage, v_on_src, v_volumes, v_on_dest, v_dest_storage
            USING ERRCODE = 'MD003';
    END IF;
    IF v_locked < v_volumes THEN
        RAISE EXCEPTION 'disk % is not locked by its move (% of % volumes LOCKED)',
            v_image_group_id, v_locked, v_volumes USING ERRCODE = 'MD003';
    END IF;

    UPDATE public.image_storage_domain_map AS m
    SET storage_domain_id = v_dest_storage
    FROM public.images AS i
    WHERE i.image_guid = m.image_id
      AND i.image_group_id = v_image_group_id
      AND m.storage_domain_id = v_src_storage;
    GET DIAGNOSTICS v_moved = ROW_COUNT;

    UPDATE public.images AS i
    SET imagestatus = 1, _update_date = now()
    WHERE i.image_group_id = v_image_group_id AND i.imagestatus = 2;

    RETURN v_moved;
END;
$procedure$;

-- LockTemporaryDisk: temporary disk v_image_group_id's move (its source disk and domains) and
-- its volumes (how many LOCKED), locked in the package's lock order: the original disk's
-- volumes by image_guid, then the temporary disk's. The start of every function that changes a
-- temporary disk after phase 1 (MarkTemporaryDiskIllegal, RemoveTemporaryDisk), before it reads
-- what it decides on. MD001 no such disk (or removed while waiting), MD006 not temporary.
CREATE OR REPLACE FUNCTION LockTemporaryDisk(v_image_group_id UUID)
RETURNS TABLE (
    src_image_group_id UUID,
    src_storage UUID,
    dest_storage UUID,
    temporary_image_ids UUID[],
    locked INTEGER
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.images AS i WHERE i.image_group_id = v_image_group_id) THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;
    SELECT t.src_image_group_id, t.src_storage, t.dest_storage
    INTO src_image_group_id, src_storage, dest_storage
    FROM public.images AS tmp
    INNER JOIN public.images_to_be_deleted AS t ON t.image_id = tmp.image_guid
    WHERE tmp.image_group_id = v_image_group_id
    ORDER BY t.image_id
    LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'disk % is not a temporary (To_Be_Deleted) disk', v_image_group_id
            USING ERRCODE = 'MD006';
    END IF;
    PERFORM 1
    FROM public.images AS i
    WHERE i.image_group_id = src_image_group_id
    ORDER BY i.image_guid
    FOR UPDATE;
    SELECT array_agg(x.image_guid), count(*) FILTER (WHERE x.imagestatus = 2)
    INTO temporary_image_ids, locked
    FROM (
        SELECT tmp.image_guid, tmp.imagestatus
        FROM public.images AS tmp
        WHERE tmp.image_group_id = v_image_group_id
        ORDER BY tmp.image_guid
        FOR UPDATE
    ) AS x;
    IF temporary_image_ids IS NULL THEN
        RAISE EXCEPTION 'no disk has id % (the temporary disk was removed)', v_image_group_id
            USING ERRCODE = 'MD001';
    END IF;
    RETURN NEXT;
END;
$procedure$;

-- MarkTemporaryDiskIllegal: temporary disk v_image_group_id goes ILLEGAL: it stays as the record
-- of its move's end. With v_unlock_original (compensation / end with failure): only while the
-- original disk is wholly on the source domain (MD003 once phase 3 committed: roll forward);
-- unlocks the original volumes of this move only, and records the destination's partial copy
-- in image_groups_to_be_deleted (MOVE_FAILED). Without (end with success, the deletion on the
-- source refused): only after phase 3 committed (MD003 before); records the source copy
-- (SOURCE_AFTER_MOVE). Returns the temporary volumes marked; 0 when that end already happened.
CREATE OR REPLACE FUNCTION MarkTemporaryDiskIllegal(
    v_image_group_id UUID,
    v_unlock_original BOOLEAN DEFAULT FALSE
)
RETURNS INTEGER
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_src_group UUID;
    v_src UUID;
    v_dest UUID;
    v_tmp_ids UUID[];
    v_tmp_locked INTEGER;
    v_volumes INTEGER;
    v_on_src INTEGER;
    v_on_dest INTEGER;
    v_marked INTEGER;
BEGIN
    SELECT l.src_image_group_id, l.src_storage, l.dest_storage, l.temporary_image_ids, l.locked
    INTO v_src_group, v_src, v_dest, v_tmp_ids, v_tmp_locked
    FROM public.LockTemporaryDisk(v_image_group_id) AS l;
    SELECT
        count(*),
        count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM public.image_storage_domain_map AS m
            WHERE m.image_id = i.image_guid AND m.storage_domain_id = v_src
        )),
        count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM public.image_storage_domain_map AS m
            WHERE m.image_id = i.image_guid AND m.storage_domain_id = v_dest
        ))
    INTO v_volumes, v_on_src, v_on_dest
    FROM public.images AS i
    WHERE i.image_group_id = v_src_group;

    IF coalesce(v_unlock_original, FALSE) THEN
        IF v_tmp_locked = 0 THEN
            IF v_on_src > 0 AND v_on_dest = 0 THEN
                RETURN 0;  -- already compensated
            END IF;
            IF v_on_dest > 0 THEN
                RAISE EXCEPTION 'the move of disk % from % to % ended with the disk on % (phase '
                    '3 committed); there is nothing to compensate', v_src_group, v_src, v_dest,
                    v_dest USING ERRCODE = 'MD003';
            END IF;
            RAISE EXCEPTION 'the move of disk % from % to % has ended and the disk is no longer '
                'on %; there is nothing to compensate', v_src_group, v_src, v_dest, v_src
                USING ERRCODE = 'MD003';
        END IF;
        IF v_volumes > 0 AND v_on_dest = v_volumes AND v_on_src = 0 THEN
            RAISE EXCEPTION 'phase 3 of the move of disk % from % to % committed: the disk is on '
                '%; roll forward (end with success), do not compensate', v_src_group, v_src,
                v_dest, v_dest USING ERRCODE = 'MD003';
        END IF;
        IF v_volumes = 0 OR v_on_src < v_volumes OR v_on_dest > 0 THEN
            RAISE EXCEPTION 'disk % is not wholly on storage domain % (% of % volumes, % on %); '
                'the move cannot be compensated', v_src_group, v_src, v_on_src, v_volumes,
                v_on_dest, v_dest USING ERRCODE = 'MD003';
        END IF;

        UPDATE public.images AS i
        SET imagestatus = 4, _update_date = now()
        WHERE i.image_guid = ANY(v_tmp_ids);
        GET DIAGNOSTICS v_marked = ROW_COUNT;

        UPDATE public.images AS i
        SET imagestatus = 1, _update_date = now()
        WHERE i.image_group_id = v_src_group
          AND i.imagestatus = 2
          AND i.image_guid IN (
              SELECT t.src_image_id FROM public.images_to_be_deleted AS t
              WHERE t.image_id = ANY(v_tmp_ids)
          );

        INSERT INTO public.image_groups_to_be_deleted (
            image_group_id, storage_domain_id, storage_pool_id, reason, temporary_disk_id,
            wipe_after_delete
        )
        SELECT
            v_src_group, v_dest,
            (SELECT p.storage_pool_id FROM public.storage_pool_iso_map AS p WHERE p.storage_id = v_dest),
            'MOVE_FAILED', v_image_group_id,
            coalesce((SELECT b.wipe_after_delete FROM public.base_disks AS b
                      WHERE b.disk_id = v_image_group_id), FALSE)
        ON CONFLICT ON CONSTRAINT pk_image_groups_to_be_deleted DO NOTHING;
        RETURN v_marked;
    END IF;

    IF v_on_src > 0 THEN
        IF v_tmp_locked > 0 THEN
            RAISE EXCEPTION 'phase 3 of the move of disk % from % to % has not committed (the '
                'disk is on %): compensate with v_unlock_original => TRUE', v_src_group, v_src,
                v_dest, v_src USING ERRCODE = 'MD003';
        END IF;
        RAISE EXCEPTION 'temporary disk % records a move that ended with failure (disk % is '
            'still on %)', v_image_group_id, v_src_group, v_src USING ERRCODE = 'MD003';
    END IF;
    IF v_tmp_locked = 0 THEN
        RETURN 0;  -- already marked
    END IF;

    UPDATE public.images AS i
    SET imagestatus = 4, _update_date = now()
    WHERE i.image_guid = ANY(v_tmp_ids);
    GET DIAGNOSTICS v_marked = ROW_COUNT;

    INSERT INTO public.image_groups_to_be_deleted (
        image_group_id, storage_domain_id, storage_pool_id, reason, temporary_disk_id,
        wipe_after_delete
    )
    SELECT
        v_src_group, v_src,
        (SELECT p.storage_pool_id FROM public.storage_pool_iso_map AS p WHERE p.storage_id = v_src),
        'SOURCE_AFTER_MOVE', v_image_group_id,
        coalesce((SELECT b.wipe_after_delete FROM public.base_disks AS b
                  WHERE b.disk_id = v_image_group_id), FALSE)
    ON CONFLICT ON CONSTRAINT pk_image_groups_to_be_deleted DO NOTHING;
    RETURN v_marked;
END;
$procedure$;

-- RemoveTemporaryDisk: the database side of removing temporary disk v_image_group_id: its
-- images_to_be_deleted rows, volumes, mappings and disk row. When the source disk is not live on
-- the source domain (IsImageGroupOnStorageDomain; plan STORAGE_AND_DB: after phase 3, or the
-- disk gone) the caller passes v_storage_deleted => TRUE once the agent deleted the image group
-- there; that also confirms the pending SOURCE_AFTER_MOVE deletion. Refuses (MD003) a move still
-- in flight (LOCKED while the disk is live on the source: compensate first). Returns the volumes
-- removed; a repeat finds no disk (MD001).
CREATE OR REPLACE FUNCTION RemoveTemporaryDisk(
    v_image_group_id UUID,
    v_storage_deleted BOOLEAN DEFAULT FALSE
)
RETURNS INTEGER
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_src_group UUID;
    v_src UUID;
    v_tmp_ids UUID[];
    v_tmp_locked INTEGER;
    v_live_original BOOLEAN;
    v_removed INTEGER;
BEGIN
    SELECT l.src_image_group_id, l.src_storage, l.temporary_image_ids, l.locked
    INTO v_src_group, v_src, v_tmp_ids, v_tmp_locked
    FROM public.LockTemporaryDisk(v_image_group_id) AS l;
    v_live_original := public.IsImageGroupOnStorageDomain(v_src_group, v_src);

    IF v_live_original AND v_tmp_locked > 0 THEN
        RAISE EXCEPTION 'temporary disk % belongs to a move still in flight; mark it ILLEGAL '
            '(compensate) first', v_image_group_id USING ERRCODE = 'MD003';
    END IF;
    IF NOT v_live_original AND NOT coalesce(v_storage_deleted, FALSE) THEN
        RAISE EXCEPTION 'the leftover of temporary disk % must be deleted on its source domain '
            'first (removal plan STORAGE_AND_DB)', v_image_group_id USING ERRCODE = 'MD003';
    END IF;

    DELETE FROM public.images_to_be_deleted AS t WHERE t.image_id = ANY(v_tmp_ids);
    DELETE FROM public.image_storage_domain_map AS m WHERE m.image_id = ANY(v_tmp_ids);
    DELETE FROM public.disk_image_dynamic AS d WHERE d.image_id = ANY(v_tmp_ids);
    DELETE FROM public.images AS i WHERE i.image_guid = ANY(v_tmp_ids);
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    DELETE FROM public.base_disks AS b WHERE b.disk_id = v_image_group_id;
    IF NOT v_live_original THEN
        DELETE FROM public.image_groups_to_be_deleted AS g
        WHERE g.image_group_id = v_src_group AND g.storage_domain_id = v_src;
    END IF;
    RETURN v_removed;
END;
$procedure$;

-- GetAllTemporaryDisks: one row per temporary disk: its source disk and domains, its status and
-- the original's, and whether the original is live on the source domain (the storage match,
-- IsImageGroupOnStorageDomain).
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
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        tmp.image_group_id,
        t.src_image_group_id,
        t.src_storage,
        t.dest_storage,
        max(tmp.imagestatus),
        (SELECT max(o.imagestatus) FROM public.images AS o WHERE o.image_group_id = t.src_image_group_id),
        public.IsImageGroupOnStorageDomain(t.src_image_group_id, t.src_storage),
        count(*),
        min(t._create_date)
    FROM public.images_to_be_deleted AS t
    INNER JOIN public.images AS tmp ON tmp.image_guid = t.image_id
    GROUP BY tmp.image_group_id, t.src_image_group_id, t.src_storage, t.dest_storage
    ORDER BY min(t._create_date);
END;
$procedure$;
