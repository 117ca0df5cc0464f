-- Deletions the storage still owes (storage_deletions): the partial copy of a failed move on
-- its destination, the leftover of a finished move on its source. Each stays recorded until the
-- storage agent confirms it; cleanup claims them (FOR UPDATE SKIP LOCKED, with a lease) and
-- retries failures with backoff.

-- GetAllFromStorageDeletions: every deletion the storage still owes, oldest first.
CREATE OR REPLACE FUNCTION GetAllFromStorageDeletions()
RETURNS SETOF STORAGE_DELETIONS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY SELECT * FROM storage_deletions AS d ORDER BY d.recorded_at;
END;
$procedure$;

-- ClaimStorageDeletions: up to v_limit pending deletions (only those due, unless v_due_only is
-- FALSE; only those of move v_command_id when given) that no live process holds (free, expired,
-- or held by one of v_dead_owners, processes the caller saw dead), leased to v_lease_owner; rows
-- other processes are claiming are skipped.
CREATE OR REPLACE FUNCTION ClaimStorageDeletions(
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER,
    v_limit INTEGER,
    v_due_only BOOLEAN DEFAULT TRUE,
    v_command_id UUID DEFAULT NULL,
    v_dead_owners TEXT[] DEFAULT NULL
)
RETURNS SETOF STORAGE_DELETIONS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    UPDATE storage_deletions AS d
    SET lease_owner = v_lease_owner, lease_expires = now() + make_interval(secs => v_lease_seconds)
    FROM (
        SELECT s.deletion_id
        FROM storage_deletions AS s
        WHERE
            (NOT v_due_only OR s.next_attempt_at <= now())
            AND (v_command_id IS NULL OR s.command_id = v_command_id)
            AND (
                s.lease_owner IS NULL
                OR s.lease_expires < now()
                OR s.lease_owner = v_lease_owner
                OR s.lease_owner = ANY(v_dead_owners)
            )
        ORDER BY s.next_attempt_at
        LIMIT v_limit
        FOR UPDATE SKIP LOCKED
    ) AS pick
    WHERE d.deletion_id = pick.deletion_id
    RETURNING d.*;
END;
$procedure$;

-- PrepareTemporaryDiskRemoval: the start of removing ILLEGAL temporary disk v_image_group_id.
-- Plan DB_ONLY (the original is still on the source domain: the data there is the live disk):
-- the rows go now and no row is returned. Plan STORAGE_AND_DB: the deletion of the source image
-- group is recorded (storage_deletions SOURCE_LEFTOVER) and leased to v_lease_owner, and returned;
-- the rows go once the agent confirmed it (ConfirmStorageDeletion). MD001 unknown disk, MD006 not
-- temporary, MD003 LOCKED (its move is running) or another process is removing it.
CREATE OR REPLACE FUNCTION PrepareTemporaryDiskRemoval(
    v_image_group_id UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER
)
RETURNS SETOF STORAGE_DELETIONS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_first UUID;
    v_locked INTEGER;
    v_plan RECORD;
    v_del storage_deletions;
BEGIN
    SELECT min(i.image_guid::TEXT)::UUID, count(*) FILTER (WHERE i.imagestatus = 2)
    INTO v_first, v_locked
    FROM (
        SELECT img.image_guid, img.imagestatus
        FROM images AS img
        WHERE img.image_group_id = v_image_group_id
        ORDER BY img.image_guid
        FOR UPDATE
    ) AS i;
    IF v_first IS NULL THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;
    SELECT * INTO v_plan FROM GetImageToBeDeletedRemovalPlan(v_first);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'disk % is not a temporary (To_Be_Deleted) disk', v_image_group_id
            USING ERRCODE = 'MD006';
    END IF;
    IF v_locked > 0 THEN
        RAISE EXCEPTION 'temporary disk % is LOCKED: its move is still running', v_image_group_id
            USING ERRCODE = 'MD003';
    END IF;
    IF v_plan.removal = 'DB_ONLY' THEN
        PERFORM RemoveTemporaryDisk(v_image_group_id, FALSE);
        DELETE FROM storage_deletions AS d WHERE d.temporary_disk_id = v_image_group_id;
        PERFORM InsertMoveDiskAuditLog(
            19001, 'MOVEDISK_LEFTOVER_REMOVED', 0,
            format('Temporary disk %s of disk %s was removed (its source data on %s is the live '
                'disk: only its records went).', v_image_group_id, v_plan.src_image_group_id,
                v_plan.storage_domain_id),
            v_plan.storage_pool_id, v_plan.storage_domain_id, NULL
        );
        RETURN;
    END IF;
    INSERT INTO storage_deletions (
        deletion_id, kind, storage_pool_id, storage_domain_id, image_group_id, temporary_disk_id,
        post_zero
    )
    VALUES (
        gen_random_uuid(), 'SOURCE_LEFTOVER', v_plan.storage_pool_id, v_plan.storage_domain_id,
        v_plan.src_image_group_id, v_image_group_id, v_plan.wipe_after_delete
    )
    ON CONFLICT (storage_domain_id, image_group_id) DO NOTHING;
    SELECT * INTO v_del
    FROM storage_deletions AS d
    WHERE d.storage_domain_id = v_plan.storage_domain_id AND d.image_group_id = v_plan.src_image_group_id
    FOR UPDATE;
    IF v_del.lease_owner IS NOT NULL AND v_del.lease_owner <> v_lease_owner
        AND v_del.lease_expires >= now() THEN
        RAISE EXCEPTION 'the leftover of temporary disk % is being deleted by another process (%)',
            v_image_group_id, v_del.lease_owner USING ERRCODE = 'MD003';
    END IF;
    RETURN QUERY
    UPDATE storage_deletions AS d
    SET lease_owner = v_lease_owner, lease_expires = now() + make_interval(secs => v_lease_seconds)
    WHERE d.deletion_id = v_del.deletion_id
    RETURNING d.*;
END;
$procedure$;

-- ConfirmStorageDeletion: the agent confirmed deletion v_deletion_id done (or found nothing to
-- delete): a SOURCE_LEFTOVER's temporary disk and rows go (MOVEDISK_LEFTOVER_REMOVED); the
-- deletion is forgotten. Answers FALSE when it was already confirmed; MD003 when another live
-- process holds it.
CREATE OR REPLACE FUNCTION ConfirmStorageDeletion(
    v_deletion_id UUID,
    v_lease_owner VARCHAR(255)
)
RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_del storage_deletions;
BEGIN
    SELECT * INTO v_del FROM storage_deletions AS d WHERE d.deletion_id = v_deletion_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN FALSE;
    END IF;
    IF v_del.lease_owner IS DISTINCT FROM v_lease_owner AND v_del.lease_expires >= now() THEN
        RAISE EXCEPTION 'deletion % is held by another process (%)', v_deletion_id,
            v_del.lease_owner USING ERRCODE = 'MD003';
    END IF;
    IF v_del.kind = 'SOURCE_LEFTOVER' AND EXISTS (
        SELECT 1 FROM images AS i WHERE i.image_group_id = v_del.temporary_disk_id
    ) THEN
        PERFORM RemoveTemporaryDisk(v_del.temporary_disk_id, TRUE);
        PERFORM InsertMoveDiskAuditLog(
            19001, 'MOVEDISK_LEFTOVER_REMOVED', 0,
            format('The leftover of disk %s on storage domain %s was deleted and its temporary '
                'disk %s removed.', v_del.image_group_id, v_del.storage_domain_id,
                v_del.temporary_disk_id),
            v_del.storage_pool_id, v_del.storage_domain_id, v_del.command_id
        );
    END IF;
    DELETE FROM storage_deletions AS d WHERE d.deletion_id = v_deletion_id;
    RETURN TRUE;
END;
$procedure$;

-- RecordStorageDeletionFailure: deletion v_deletion_id failed again (v_error): counted, not
-- retried before v_retry_seconds, its lease released. The first failure of a PARTIAL_COPY raises
-- USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_DST_IMAGE. Answers the attempts so far.
CREATE OR REPLACE FUNCTION RecordStorageDeletionFailure(
    v_deletion_id UUID,
    v_lease_owner VARCHAR(255),
    v_error TEXT,
    v_retry_seconds INTEGER
)
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_del storage_deletions;
BEGIN
    UPDATE storage_deletions AS d
    SET
        attempts = d.attempts + 1,
        last_error = v_error,
        next_attempt_at = now() + make_interval(secs => v_retry_seconds),
        lease_owner = NULL,
        lease_expires = NULL
    WHERE
        d.deletion_id = v_deletion_id
        AND (d.lease_owner IS NULL OR d.lease_owner = v_lease_owner OR d.lease_expires < now())
    RETURNING d.* INTO v_del;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_del.kind = 'PARTIAL_COPY' AND v_del.attempts = 1 THEN
        PERFORM InsertMoveDiskAuditLog(
            2026, 'USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_DST_IMAGE', 1,
            format('Could not delete the partial copy of disk %s on storage domain %s: %s',
                v_del.image_group_id, v_del.storage_domain_id, v_error),
            v_del.storage_pool_id, v_del.storage_domain_id, v_del.command_id
        );
    END IF;
    RETURN v_del.attempts;
END;
$procedure$;
