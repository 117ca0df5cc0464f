-- The engine's side of the pending storage deletions (image_groups_to_be_deleted): cleanups and
-- removals in several processes claim them (FOR UPDATE SKIP LOCKED, a lease in
-- image_group_deletion_leases), delete at the agent, then confirm or record the failure. The
-- retry backoff is the engine's policy (v_retry_base_seconds doubling per attempt, capped).
-- Never claims a deletion where the disk is live (IsImageGroupOnStorageDomain).

-- ClaimImageGroupsToBeDeleted: up to v_limit pending storage deletions that are due (no failed
-- attempt yet, or the last one older than base * 2^(attempts-1) seconds, capped; all of them
-- with v_due_only FALSE), not live on their domain, and not held by a live process (no lease,
-- expired, ours, or held by one of v_dead_owners), leased to v_lease_owner for v_lease_seconds.
-- With v_image_group_id (and v_storage_domain_id) only that disk's (on that domain). Rows other
-- processes are claiming are skipped.
CREATE OR REPLACE FUNCTION ClaimImageGroupsToBeDeleted(
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER,
    v_limit INTEGER,
    v_due_only BOOLEAN DEFAULT TRUE,
    v_retry_base_seconds INTEGER DEFAULT 5,
    v_retry_cap_seconds INTEGER DEFAULT 600,
    v_image_group_id UUID DEFAULT NULL,
    v_dead_owners TEXT[] DEFAULT NULL,
    v_storage_domain_id UUID DEFAULT NULL
)
RETURNS TABLE (
    image_group_id UUID,
    storage_domain_id UUID,
    storage_pool_id UUID,
    reason TEXT,
    temporary_disk_id UUID,
    wipe_after_delete BOOLEAN,
    attempts BIGINT,
    last_error TEXT
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_row RECORD;
    v_taken TEXT;
BEGIN
    FOR v_row IN
        SELECT g.*
        FROM public.image_groups_to_be_deleted AS g
        LEFT JOIN public.image_group_deletion_leases AS l
            ON l.image_group_id = g.image_group_id AND l.storage_domain_id = g.storage_domain_id
        WHERE
            (v_image_group_id IS NULL OR g.image_group_id = v_image_group_id)
            AND (v_storage_domain_id IS NULL OR g.storage_domain_id = v_storage_domain_id)
            AND (
                NOT v_due_only
                OR g.last_attempt IS NULL
                OR g.last_attempt + make_interval(secs => least(
                    v_retry_cap_seconds::DOUBLE PRECISION,
                    v_retry_base_seconds * power(2, greatest(g.attempts - 1, 0))
                )) <= now()
            )
            AND (
                l.lease_owner IS NULL
                OR l.lease_expires < now()
                OR l.lease_owner = v_lease_owner
                OR l.lease_owner = ANY(v_dead_owners)
            )
            AND NOT public.IsImageGroupOnStorageDomain(g.image_group_id, g.storage_domain_id)
        ORDER BY g._create_date, g.image_group_id, g.storage_domain_id
        LIMIT v_limit
        FOR UPDATE OF g SKIP LOCKED
    LOOP
        -- The lease is taken only if it is still free now: the scan above read the leases as
        -- they were when it started, and a process that claimed this row and committed since
        -- then has released the row lock but holds the lease. The upsert's condition is checked
        -- on the lease as committed (waiting for a claim in progress), so two processes never
        -- both take it.
        INSERT INTO public.image_group_deletion_leases AS l (
            image_group_id, storage_domain_id, lease_owner, lease_expires
        )
        VALUES (
            v_row.image_group_id, v_row.storage_domain_id, v_lease_owner,
            now() + make_interval(secs => v_lease_seconds)
        )
        ON CONFLICT ON CONSTRAINT pk_image_group_deletion_leases DO UPDATE
        SET lease_owner = excluded.lease_owner, lease_expires = excluded.lease_expires
        WHERE
            l.lease_expires < now()
            OR l.lease_owner = v_lease_owner
            OR l.lease_owner = ANY(v_dead_owners)
        RETURNING l.lease_owner INTO v_taken;
        IF NOT FOUND THEN
            CONTINUE;
        END IF;
        image_group_id := v_row.image_group_id;
        storage_domain_id := v_row.storage_domain_id;
        storage_pool_id := coalesce((
            SELECT p.storage_pool_id FROM public.storage_pool_iso_map AS p
            WHERE p.storage_id = v_row.storage_domain_id LIMIT 1
        ), v_row.storage_pool_id);
        reason := v_row.reason;
        temporary_disk_id := v_row.temporary_disk_id;
        wipe_after_delete := v_row.wipe_after_delete;
        attempts := v_row.attempts;
        last_error := v_row.last_error;
        RETURN NEXT;
    END LOOP;
END;
$procedure$;

-- GetImageGroupDeletionLeases: who deletes which pending deletion now (every lease).
CREATE OR REPLACE FUNCTION GetImageGroupDeletionLeases()
RETURNS SETOF IMAGE_GROUP_DELETION_LEASES
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY SELECT * FROM public.image_group_deletion_leases AS l ORDER BY l.lease_expires;
END;
$procedure$;

-- PrepareTemporaryDiskRemoval: the start of removing ILLEGAL temporary disk v_image_group_id.
-- Plan DB_ONLY (the original is live on the source domain): the rows go now
-- (RemoveTemporaryDisk), USER_MOVED_DISK_LEFTOVER_REMOVED, and no row is returned. Plan STORAGE_AND_DB:
-- the pending deletion of the source image group on the source domain (recorded when the move
-- ended, else now) is leased to v_lease_owner and returned; the rows go once the agent confirmed
-- it (ConfirmStorageDeletion). MD001 unknown disk, MD006 not temporary, MD003 LOCKED (its move is
-- running) or another live process is deleting it.
CREATE OR REPLACE FUNCTION PrepareTemporaryDiskRemoval(
    v_image_group_id UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER
)
RETURNS TABLE (
    image_group_id UUID,
    storage_domain_id UUID,
    storage_pool_id UUID,
    reason TEXT,
    temporary_disk_id UUID,
    wipe_after_delete BOOLEAN,
    attempts BIGINT,
    last_error TEXT
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_first UUID;
    v_locked INTEGER;
    v_plan RECORD;
    v_lease public.image_group_deletion_leases;
BEGIN
    SELECT min(i.image_guid::TEXT)::UUID, count(*) FILTER (WHERE i.imagestatus = 2)
    INTO v_first, v_locked
    FROM (
        SELECT img.image_guid, img.imagestatus
        FROM public.images AS img
        WHERE img.image_group_id = v_image_group_id
        ORDER BY img.image_guid
        FOR UPDATE
    ) AS i;
    IF v_first IS NULL THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;
    SELECT * INTO v_plan FROM public.GetImageToBeDeletedRemovalPlan(v_first) AS p LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'disk % is not a temporary (To_Be_Deleted) disk', v_image_group_id
            USING ERRCODE = 'MD006';
    END IF;
    IF v_locked > 0 THEN
        RAISE EXCEPTION 'temporary disk % is LOCKED: its move is still running', v_image_group_id
            USING ERRCODE = 'MD003';
    END IF;
    IF v_plan.removal = 'DB_ONLY' THEN
        PERFORM public.RemoveTemporaryDisk(v_image_group_id, FALSE);
        PERFORM public.InsertMoveDiskAuditLog(
            20001, 'USER_MOVED_DISK_LEFTOVER_REMOVED', 0,
            format('Temporary disk %s of disk %s was removed (its source data on %s is the live '
                'disk: only its records went).', v_image_group_id, v_plan.src_image_group_id,
                v_plan.storage_domain_id),
            v_plan.storage_pool_id, v_plan.storage_domain_id, NULL
        );
        RETURN;
    END IF;
    INSERT INTO public.image_groups_to_be_deleted AS g (
        image_group_id, storage_domain_id, storage_pool_id, reason, temporary_disk_id,
        wipe_after_delete
    )
    VALUES (
        v_plan.src_image_group_id, v_plan.storage_domain_id, v_plan.storage_pool_id,
        'SOURCE_AFTER_MOVE', v_image_group_id, v_plan.wipe_after_delete
    )
    ON CONFLICT ON CONSTRAINT pk_image_groups_to_be_deleted DO NOTHING;
    -- One statement takes the lease if it is free, checked on the lease as committed (a
    -- cleanup claiming the same deletion at this moment is waited for): a separate check then
    -- insert could overwrite a lease another process took in between.
    INSERT INTO public.image_group_deletion_leases AS l (
        image_group_id, storage_domain_id, lease_owner, lease_expires
    )
    VALUES (
        v_plan.src_image_group_id, v_plan.storage_domain_id, v_lease_owner,
        now() + make_interval(secs => v_lease_seconds)
    )
    ON CONFLICT ON CONSTRAINT pk_image_group_deletion_leases DO UPDATE
    SET lease_owner = excluded.lease_owner, lease_expires = excluded.lease_expires
    WHERE l.lease_owner = v_lease_owner OR l.lease_expires < now()
    RETURNING * INTO v_lease;
    IF NOT FOUND THEN
        SELECT * INTO v_lease
        FROM public.image_group_deletion_leases AS l
        WHERE l.image_group_id = v_plan.src_image_group_id
          AND l.storage_domain_id = v_plan.storage_domain_id;
        RAISE EXCEPTION 'the leftover of temporary disk % is being deleted by another process (%)',
            v_image_group_id, v_lease.lease_owner USING ERRCODE = 'MD003';
    END IF;
    RETURN QUERY
    SELECT
        g.image_group_id, g.storage_domain_id, v_plan.storage_pool_id, g.reason,
        g.temporary_disk_id, g.wipe_after_delete, g.attempts, g.last_error
    FROM public.image_groups_to_be_deleted AS g
    WHERE g.image_group_id = v_plan.src_image_group_id
      AND g.storage_domain_id = v_plan.storage_domain_id;
END;
$procedure$;

-- ConfirmStorageDeletion: the agent confirmed image group v_image_group_id gone from domain
-- v_storage_domain_id (deleted, or not there): a source leftover's temporary disk and rows go
-- (RemoveTemporaryDisk, USER_MOVED_DISK_LEFTOVER_REMOVED), any other pending deletion is confirmed
-- (ConfirmImageGroupDeleted); the lease goes. Answers FALSE when nothing was pending (already
-- confirmed); MD003 when another live process holds the deletion.
CREATE OR REPLACE FUNCTION ConfirmStorageDeletion(
    v_image_group_id UUID,
    v_storage_domain_id UUID,
    v_lease_owner VARCHAR(255)
)
RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_del public.image_groups_to_be_deleted;
    v_lease public.image_group_deletion_leases;
BEGIN
    SELECT * INTO v_lease
    FROM public.image_group_deletion_leases AS l
    WHERE l.image_group_id = v_image_group_id AND l.storage_domain_id = v_storage_domain_id;
    IF FOUND AND v_lease.lease_owner <> v_lease_owner AND v_lease.lease_expires >= now() THEN
        RAISE EXCEPTION 'the deletion of image group % on % is held by another process (%)',
            v_image_group_id, v_storage_domain_id, v_lease.lease_owner USING ERRCODE = 'MD003';
    END IF;
    SELECT * INTO v_del
    FROM public.image_groups_to_be_deleted AS g
    WHERE g.image_group_id = v_image_group_id AND g.storage_domain_id = v_storage_domain_id;
    IF NOT FOUND THEN
        DELETE FROM public.image_group_deletion_leases AS l
        WHERE l.image_group_id = v_image_group_id AND l.storage_domain_id = v_storage_domain_id;
        RETURN FALSE;
    END IF;
    IF v_del.reason = 'SOURCE_AFTER_MOVE' AND EXISTS (
        SELECT 1 FROM public.images_to_be_deleted AS t
        INNER JOIN public.images AS i ON i.image_guid = t.image_id
        WHERE i.image_group_id = v_del.temporary_disk_id
    ) THEN
        PERFORM public.RemoveTemporaryDisk(v_del.temporary_disk_id, TRUE);
        PERFORM public.InsertMoveDiskAuditLog(
            20001, 'USER_MOVED_DISK_LEFTOVER_REMOVED', 0,
            format('The leftover of disk %s on storage domain %s was deleted and its temporary '
                'disk %s removed.', v_image_group_id, v_storage_domain_id, v_del.temporary_disk_id),
            v_del.storage_pool_id, v_storage_domain_id, NULL
        );
    END IF;
    PERFORM public.ConfirmImageGroupDeleted(v_image_group_id, v_storage_domain_id);
    DELETE FROM public.image_group_deletion_leases AS l
    WHERE l.image_group_id = v_image_group_id AND l.storage_domain_id = v_storage_domain_id;
    RETURN TRUE;
END;
$procedure$;

-- RecordStorageDeletionFailure: the agent failed again to delete image group v_image_group_id on
-- v_storage_domain_id (v_error): the attempt counted (RecordImageGroupDeletionFailure), the lease
-- released. The first failure of a failed move's partial copy raises
-- USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_DST_IMAGE. Answers the attempts so far (0: none pending).
CREATE OR REPLACE FUNCTION RecordStorageDeletionFailure(
    v_image_group_id UUID,
    v_storage_domain_id UUID,
    v_lease_owner VARCHAR(255),
    v_error TEXT
)
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_attempts BIGINT;
    v_del public.image_groups_to_be_deleted;
BEGIN
    DELETE FROM public.image_group_deletion_leases AS l
    WHERE l.image_group_id = v_image_group_id AND l.storage_domain_id = v_storage_domain_id
      AND (l.lease_owner = v_lease_owner OR l.lease_expires < now());
    v_attempts := public.RecordImageGroupDeletionFailure(v_image_group_id, v_storage_domain_id, v_error);
    SELECT * INTO v_del
    FROM public.image_groups_to_be_deleted AS g
    WHERE g.image_group_id = v_image_group_id AND g.storage_domain_id = v_storage_domain_id;
    IF FOUND AND v_del.reason = 'MOVE_FAILED' AND v_attempts = 1 THEN
        PERFORM public.InsertMoveDiskAuditLog(
            2026, 'USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_DST_IMAGE', 1,
            format('Could not delete the partial copy of disk %s on storage domain %s: %s',
                v_image_group_id, v_storage_domain_id, v_error),
            v_del.storage_pool_id, v_storage_domain_id, NULL
        );
    END IF;
    RETURN v_attempts;
END;
$procedure$;
