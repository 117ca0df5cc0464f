-- image_groups_to_be_deleted: the deletions the storage agent still owes (a failed move's partial
-- copy on its destination, a moved disk's source copy whose deletion was refused), for the
-- engine's cleanup: list them, record a failed attempt (for its retry backoff), confirm one done.
-- A deletion is never listed as safe on a domain where the disk is live
-- (IsImageGroupOnStorageDomain); ConfirmImageGroupDeleted refuses there (MD003).

-- GetAllImageGroupsToBeDeleted: every pending storage deletion, oldest first. Never delete one
-- whose live_on_storage_domain is true (the disk is live there; VerifyAll reports it). Confirm a
-- MOVE_FAILED one with ConfirmImageGroupDeleted, a SOURCE_AFTER_MOVE one with
-- RemoveTemporaryDisk(temporary_disk_id, v_storage_deleted => TRUE).
CREATE OR REPLACE FUNCTION GetAllImageGroupsToBeDeleted()
RETURNS TABLE (
    image_group_id UUID,
    storage_domain_id UUID,
    storage_pool_id UUID,
    reason TEXT,
    temporary_disk_id UUID,
    wipe_after_delete BOOLEAN,
    attempts BIGINT,
    last_attempt TIMESTAMPTZ,
    last_error TEXT,
    _create_date TIMESTAMPTZ,
    live_on_storage_domain BOOLEAN
)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT
        g.image_group_id, g.storage_domain_id, coalesce(p.storage_pool_id, g.storage_pool_id),
        g.reason, g.temporary_disk_id, g.wipe_after_delete, g.attempts, g.last_attempt,
        g.last_error, g._create_date,
        public.IsImageGroupOnStorageDomain(g.image_group_id, g.storage_domain_id)
    FROM public.image_groups_to_be_deleted AS g
    LEFT JOIN public.storage_pool_iso_map AS p ON p.storage_id = g.storage_domain_id
    ORDER BY g._create_date, g.image_group_id, g.storage_domain_id;
END;
$procedure$;

-- GetImageGroupsToBeDeletedByImageGroupId: the pending storage deletions of disk v_image_group_id.
CREATE OR REPLACE FUNCTION GetImageGroupsToBeDeletedByImageGroupId(v_image_group_id UUID)
RETURNS SETOF IMAGE_GROUPS_TO_BE_DELETED
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT g.*
    FROM public.image_groups_to_be_deleted AS g
    WHERE g.image_group_id = v_image_group_id
    ORDER BY g.storage_domain_id;
END;
$procedure$;

-- GetImageGroupsToBeDeletedByStorageDomainId: the pending storage deletions on that domain.
CREATE OR REPLACE FUNCTION GetImageGroupsToBeDeletedByStorageDomainId(v_storage_domain_id UUID)
RETURNS SETOF IMAGE_GROUPS_TO_BE_DELETED
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT g.*
    FROM public.image_groups_to_be_deleted AS g
    WHERE g.storage_domain_id = v_storage_domain_id
    ORDER BY g._create_date, g.image_group_id;
END;
$procedure$;

-- ConfirmImageGroupDeleted: the agent confirmed that image group v_image_group_id is gone from
-- domain v_storage_domain_id (deleted, or ImageDoesNotExistInSD): the pending deletion is
-- forgotten. Returns 1, or 0 when none was pending (already confirmed). Refuses (MD003) while
-- the disk is live on that domain, and while a temporary disk still records that deletion
-- (RemoveTemporaryDisk(v_storage_deleted => TRUE) confirms those).
CREATE OR REPLACE FUNCTION ConfirmImageGroupDeleted(
    v_image_group_id UUID,
    v_storage_domain_id UUID
)
RETURNS INTEGER
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_tmp UUID;
    v_gone INTEGER;
BEGIN
    -- The package's one lock order: the disk's volumes first (a move of it waits).
    PERFORM 1
    FROM public.images AS i
    WHERE i.image_group_id = v_image_group_id
    ORDER BY i.image_guid
    FOR UPDATE;
    PERFORM 1
    FROM public.image_groups_to_be_deleted AS g
    WHERE g.image_group_id = v_image_group_id AND g.storage_domain_id = v_storage_domain_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF public.IsImageGroupOnStorageDomain(v_image_group_id, v_storage_domain_id) THEN
        RAISE EXCEPTION 'disk % is live on storage domain %; its deletion there is not pending '
            '(check the storage)', v_image_group_id, v_storage_domain_id USING ERRCODE = 'MD003';
    END IF;
    SELECT tmp.image_group_id INTO v_tmp
    FROM public.images_to_be_deleted AS t
    INNER JOIN public.images AS tmp ON tmp.image_guid = t.image_id
    WHERE t.src_image_group_id = v_image_group_id AND t.src_storage = v_storage_domain_id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'temporary disk % records the leftover of disk % on storage domain %; '
            'confirm with public.RemoveTemporaryDisk(%, v_storage_deleted => TRUE)', v_tmp,
            v_image_group_id, v_storage_domain_id, v_tmp USING ERRCODE = 'MD003';
    END IF;
    DELETE FROM public.image_groups_to_be_deleted AS g
    WHERE g.image_group_id = v_image_group_id AND g.storage_domain_id = v_storage_domain_id;
    GET DIAGNOSTICS v_gone = ROW_COUNT;
    RETURN v_gone;
END;
$procedure$;

-- RecordImageGroupDeletionFailure: the agent failed to delete image group v_image_group_id on
-- domain v_storage_domain_id (error v_error): counts the attempt. Returns the attempts so far, or
-- 0 when no deletion is pending there (already confirmed).
CREATE OR REPLACE FUNCTION RecordImageGroupDeletionFailure(
    v_image_group_id UUID,
    v_storage_domain_id UUID,
    v_error TEXT DEFAULT NULL
)
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_attempts BIGINT;
BEGIN
    UPDATE public.image_groups_to_be_deleted AS g
    SET attempts = g.attempts + 1, last_attempt = now(), last_error = v_error
    WHERE g.image_group_id = v_image_group_id AND g.storage_domain_id = v_storage_domain_id
    RETURNING g.attempts INTO v_attempts;
    RETURN coalesce(v_attempts, 0);
END;
$procedure$;
