-- Disk moves run as commands (the harness's engine side): each function is one transaction
-- that does one phase of a move and records the stage it reached, so that a process that dies
-- anywhere leaves a state any other process can finish. A move is a command_entities row
-- (MoveOrCopyDisk, 228) plus its move_disk_commands row (stage, lease); agent tasks are
-- async_tasks rows of the command; phase 1 records the compensation in business_entity_snapshot.
-- Every change after phase 1 requires the caller to hold the command's lease (fencing: a process
-- whose lease was taken over cannot change the move any more).

-- Errors: MD001 unknown disk, MD002 wrong domain, MD003 busy / wrong stage / lease lost,
-- MD006 not a temporary disk, MD007 no room (from CreateTemporaryDiskForMove).
-- Events (audit_log, oVirt's AuditLogType): USER_MOVED_DISK 2008, USER_MOVED_DISK_FINISHED_SUCCESS
-- 2010, USER_MOVED_DISK_FINISHED_FAILURE 2011, USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_SRC_IMAGE
-- 2025, USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_DST_IMAGE 2026, USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS
-- 2052; outside oVirt's range (harness/audit.py): USER_MOVED_DISK_LEFTOVER_REMOVED 20001,
-- SYSTEM_MOVED_DISK_RECOVERED 20002.

-- StartMoveDiskCommand: validation and phase 1 of moving disk v_image_group_id from the domain
-- holding it to v_dest_storage, in one transaction: the temporary disk (CreateTemporaryDiskForMove),
-- the command (command_entities, ACTIVE), its stage TEMPORARY_CREATED with the caller's lease,
-- and the USER_MOVED_DISK event. Refuses (changing nothing) what CreateTemporaryDiskForMove refuses
-- (a destination still owing a deletion of the disk included) and a disk on several domains.
CREATE OR REPLACE FUNCTION StartMoveDiskCommand(
    v_command_id UUID,
    v_image_group_id UUID,
    v_dest_storage UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER,
    v_user_id UUID DEFAULT NULL
)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_domains INTEGER;
    v_src UUID;
    v_tmp UUID;
    v_pool UUID;
    v_wipe BOOLEAN;
    v_alias TEXT;
BEGIN
    SELECT count(DISTINCT m.storage_domain_id), (array_agg(m.storage_domain_id))[1]
    INTO v_domains, v_src
    FROM public.images AS i
    INNER JOIN public.image_storage_domain_map AS m ON m.image_id = i.image_guid
    WHERE i.image_group_id = v_image_group_id;
    IF v_domains = 0 THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;
    IF v_domains > 1 THEN
        RAISE EXCEPTION 'disk % is on % storage domains; a move needs it on one', v_image_group_id,
            v_domains USING ERRCODE = 'MD003';
    END IF;

    SELECT c.temporary_disk_id INTO v_tmp
    FROM public.CreateTemporaryDiskForMove(v_image_group_id, v_src, v_dest_storage, NULL, v_command_id) AS c
    LIMIT 1;

    SELECT p.storage_pool_id INTO v_pool FROM public.storage_pool_iso_map AS p WHERE p.storage_id = v_src;
    SELECT coalesce(b.wipe_after_delete, FALSE), b.disk_alias INTO v_wipe, v_alias
    FROM public.base_disks AS b WHERE b.disk_id = v_image_group_id;

    INSERT INTO public.command_entities (
        command_id, command_type, root_command_id, command_parameters, command_params_class,
        created_at, status, callback_enabled, executed, user_id
    )
    VALUES (
        v_command_id, 228, v_command_id,
        jsonb_build_object(
            'imageGroupID', v_image_group_id, 'sourceDomainId', v_src,
            'storageDomainId', v_dest_storage, 'storagePoolId', v_pool,
            'operation', 'Move', 'wipeAfterDelete', v_wipe, 'temporaryDiskId', v_tmp
        )::TEXT,
        'org.ovirt.engine.core.common.action.MoveOrCopyImageGroupParameters',
        now(), 'ACTIVE', TRUE, TRUE, v_user_id
    );
    INSERT INTO public.move_disk_commands (
        command_id, image_group_id, src_storage, dest_storage, storage_pool_id, temporary_disk_id,
        wipe_after_delete, stage, lease_owner, lease_expires
    )
    VALUES (
        v_command_id, v_image_group_id, v_src, v_dest_storage, v_pool, v_tmp, v_wipe,
        'TEMPORARY_CREATED', v_lease_owner, now() + make_interval(secs => v_lease_seconds)
    );
    PERFORM public.InsertMoveDiskAuditLog(
        2008, 'USER_MOVED_DISK', 0,
        format('Moving disk %s to storage domain %s.', coalesce(v_alias, v_image_group_id::TEXT),
            (SELECT s.storage_name FROM public.storage_domain_static AS s WHERE s.id = v_dest_storage)),
        v_pool, v_dest_storage, v_command_id
    );
    RETURN QUERY SELECT * FROM public.move_disk_commands AS c WHERE c.command_id = v_command_id;
END;
$procedure$;

-- RecordMoveDiskCopyTask: phase 2 recorded: the agent's copy task v_vdsm_task_id (tagged with the
-- command id) as an async_tasks row of the command, stage COPYING. A repeat with the same task
-- changes nothing.
CREATE OR REPLACE FUNCTION RecordMoveDiskCopyTask(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER,
    v_vdsm_task_id UUID
)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_cmd public.move_disk_commands := public.GetMoveDiskCommandForUpdate(v_command_id, v_lease_owner);
BEGIN
    IF v_cmd.stage = 'COPYING' AND v_cmd.copy_task_id = v_vdsm_task_id THEN
        RETURN QUERY SELECT * FROM public.LockMoveDiskCommand(v_command_id, v_lease_owner, v_lease_seconds);
        RETURN;
    END IF;
    IF v_cmd.stage <> 'TEMPORARY_CREATED' THEN
        RAISE EXCEPTION 'the move % is at stage %; its copy cannot be recorded', v_command_id,
            v_cmd.stage USING ERRCODE = 'MD003';
    END IF;
    PERFORM public.Insertasync_tasks(
        228, 0, 2, NULL, v_vdsm_task_id, gen_random_uuid(), NULL, v_command_id, v_command_id,
        now(), v_cmd.storage_pool_id, 1
    );
    RETURN QUERY
    UPDATE public.move_disk_commands AS c
    SET
        stage = 'COPYING', copy_task_id = v_vdsm_task_id, updated_at = now(),
        lease_expires = now() + make_interval(secs => v_lease_seconds)
    WHERE c.command_id = v_command_id
    RETURNING c.*;
END;
$procedure$;

-- SwitchMoveDiskCommand: phase 3 of move v_command_id, once its copy succeeded and was verified:
-- every volume mapped to the destination and unlocked (UpdateImageGroupStorageDomain), the copy's
-- task forgotten, stage SWITCHED. Answers the move; a repeat after phase 3 changes nothing.
-- MD003 when the move already ended with failure.
CREATE OR REPLACE FUNCTION SwitchMoveDiskCommand(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER
)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_cmd public.move_disk_commands := public.GetMoveDiskCommandForUpdate(v_command_id, v_lease_owner);
BEGIN
    IF v_cmd.stage IN ('SWITCHED', 'DELETING_SOURCE', 'ENDED_SUCCESS', 'ENDED_WITH_LEFTOVER') THEN
        RETURN QUERY SELECT * FROM public.LockMoveDiskCommand(v_command_id, v_lease_owner, v_lease_seconds);
        RETURN;
    END IF;
    IF v_cmd.stage NOT IN ('TEMPORARY_CREATED', 'COPYING') THEN
        RAISE EXCEPTION 'the move % ended (%); phase 3 cannot run', v_command_id, v_cmd.stage
            USING ERRCODE = 'MD003';
    END IF;
    PERFORM public.UpdateImageGroupStorageDomain(v_cmd.image_group_id, v_cmd.src_storage, v_cmd.dest_storage);
    DELETE FROM public.async_tasks AS t WHERE t.command_id = v_command_id;
    RETURN QUERY
    UPDATE public.move_disk_commands AS c
    SET
        stage = 'SWITCHED', updated_at = now(),
        lease_expires = now() + make_interval(secs => v_lease_seconds)
    WHERE c.command_id = v_command_id
    RETURNING c.*;
END;
$procedure$;

-- RecordMoveDiskDeleteTask: the agent's deletion of the source image group (task v_vdsm_task_id)
-- recorded against move v_command_id, stage DELETING_SOURCE. A repeat changes nothing.
CREATE OR REPLACE FUNCTION RecordMoveDiskDeleteTask(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER,
    v_vdsm_task_id UUID
)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_cmd public.move_disk_commands := public.GetMoveDiskCommandForUpdate(v_command_id, v_lease_owner);
BEGIN
    IF v_cmd.stage = 'DELETING_SOURCE' AND v_cmd.delete_task_id = v_vdsm_task_id THEN
        RETURN QUERY SELECT * FROM public.LockMoveDiskCommand(v_command_id, v_lease_owner, v_lease_seconds);
        RETURN;
    END IF;
    IF v_cmd.stage NOT IN ('SWITCHED', 'DELETING_SOURCE') THEN
        RAISE EXCEPTION 'the move % is at stage %; a source deletion cannot be recorded',
            v_command_id, v_cmd.stage USING ERRCODE = 'MD003';
    END IF;
    DELETE FROM public.async_tasks AS t WHERE t.command_id = v_command_id;
    PERFORM public.Insertasync_tasks(
        228, 0, 2, NULL, v_vdsm_task_id, gen_random_uuid(), NULL, v_command_id, v_command_id,
        now(), v_cmd.storage_pool_id, 5
    );
    RETURN QUERY
    UPDATE public.move_disk_commands AS c
    SET
        stage = 'DELETING_SOURCE', delete_task_id = v_vdsm_task_id, updated_at = now(),
        lease_expires = now() + make_interval(secs => v_lease_seconds)
    WHERE c.command_id = v_command_id
    RETURNING c.*;
END;
$procedure$;

-- EndMoveDiskCommand (internal): the rows every end of a move changes: its tasks and
-- compensation forgotten, command_entities status v_status, the final stage, the lease released.
CREATE OR REPLACE FUNCTION EndMoveDiskCommand(
    v_command_id UUID,
    v_stage VARCHAR(32),
    v_status VARCHAR(20),
    v_error TEXT
)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.async_tasks AS t WHERE t.command_id = v_command_id;
    DELETE FROM public.business_entity_snapshot AS b WHERE b.command_id = v_command_id;
    UPDATE public.command_entities AS e
    SET status = v_status, return_value = v_error
    WHERE e.command_id = v_command_id;
    RETURN QUERY
    UPDATE public.move_disk_commands AS c
    SET
        stage = v_stage, ended_at = now(), updated_at = now(), lease_owner = NULL,
        lease_expires = NULL, last_error = coalesce(v_error, c.last_error)
    WHERE c.command_id = v_command_id
    RETURNING c.*;
END;
$procedure$;

-- EndMoveDiskCommandWithSuccess: the end of move v_command_id once the agent confirmed the source
-- image group deleted: the temporary disk and its images_to_be_deleted rows go
-- (RemoveTemporaryDisk), stage ENDED_SUCCESS, USER_MOVED_DISK_FINISHED_SUCCESS. A repeat changes
-- nothing; MD003 before phase 3.
CREATE OR REPLACE FUNCTION EndMoveDiskCommandWithSuccess(
    v_command_id UUID,
    v_lease_owner VARCHAR(255)
)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_cmd public.move_disk_commands := public.GetMoveDiskCommandForUpdate(v_command_id, v_lease_owner);
BEGIN
    IF v_cmd.stage = 'ENDED_SUCCESS' THEN
        RETURN QUERY SELECT v_cmd.*;
        RETURN;
    END IF;
    IF v_cmd.stage NOT IN ('SWITCHED', 'DELETING_SOURCE') THEN
        RAISE EXCEPTION 'the move % is at stage %; it cannot end with success', v_command_id,
            v_cmd.stage USING ERRCODE = 'MD003';
    END IF;
    PERFORM public.RemoveTemporaryDisk(v_cmd.temporary_disk_id, TRUE);
    PERFORM public.InsertMoveDiskAuditLog(
        2010, 'USER_MOVED_DISK_FINISHED_SUCCESS', 0,
        format('Disk %s was moved from storage domain %s to %s.', v_cmd.image_group_id,
            v_cmd.src_storage, v_cmd.dest_storage),
        v_cmd.storage_pool_id, v_cmd.dest_storage, v_command_id
    );
    RETURN QUERY SELECT * FROM public.EndMoveDiskCommand(v_command_id, 'ENDED_SUCCESS', 'ENDED_SUCCESSFULLY', NULL);
END;
$procedure$;

-- EndMoveDiskCommandWithLeftover: the end of move v_command_id when the agent refused or failed
-- to delete the source image group (v_error says why): the temporary disk stays, ILLEGAL, as the
-- record of the leftover on the source domain (MarkTemporaryDiskIllegal records its pending
-- deletion, which cleanup retries); stage ENDED_WITH_LEFTOVER; events 2025 and 2052. A repeat
-- changes nothing.
CREATE OR REPLACE FUNCTION EndMoveDiskCommandWithLeftover(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_error TEXT
)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_cmd public.move_disk_commands := public.GetMoveDiskCommandForUpdate(v_command_id, v_lease_owner);
BEGIN
    IF v_cmd.stage = 'ENDED_WITH_LEFTOVER' THEN
        RETURN QUERY SELECT v_cmd.*;
        RETURN;
    END IF;
    IF v_cmd.stage NOT IN ('SWITCHED', 'DELETING_SOURCE') THEN
        RAISE EXCEPTION 'the move % is at stage %; it cannot end with a leftover', v_command_id,
            v_cmd.stage USING ERRCODE = 'MD003';
    END IF;
    PERFORM public.MarkTemporaryDiskIllegal(v_cmd.temporary_disk_id);
    PERFORM public.RecordImageGroupDeletionFailure(v_cmd.image_group_id, v_cmd.src_storage, v_error);
    PERFORM public.InsertMoveDiskAuditLog(
        2025, 'USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_SRC_IMAGE', 1,
        format('Could not delete disk %s on its source storage domain %s: %s', v_cmd.image_group_id,
            v_cmd.src_storage, v_error),
        v_cmd.storage_pool_id, v_cmd.src_storage, v_command_id
    );
    PERFORM public.InsertMoveDiskAuditLog(
        2052, 'USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS', 1,
        format('Disk %s was moved to storage domain %s; its leftover on %s is kept as temporary '
            'disk %s (ILLEGAL) until it can be deleted.', v_cmd.image_group_id, v_cmd.dest_storage,
            v_cmd.src_storage, v_cmd.temporary_disk_id),
        v_cmd.storage_pool_id, v_cmd.src_storage, v_command_id
    );
    RETURN QUERY
    SELECT * FROM public.EndMoveDiskCommand(v_command_id, 'ENDED_WITH_LEFTOVER', 'ENDED_SUCCESSFULLY', v_error);
END;
$procedure$;

-- EndMoveDiskCommandWithFailure: the end of move v_command_id whose copy failed or never started
-- (before phase 3): the temporary disk ILLEGAL and the original unlocked, what the copy may have
-- written on the destination recorded for deletion (MarkTemporaryDiskIllegal); stage
-- ENDED_FAILURE; USER_MOVED_DISK_FINISHED_FAILURE. A repeat changes nothing; MD003 once phase 3
-- committed (roll forward instead).
CREATE OR REPLACE FUNCTION EndMoveDiskCommandWithFailure(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_error TEXT
)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_cmd public.move_disk_commands := public.GetMoveDiskCommandForUpdate(v_command_id, v_lease_owner);
BEGIN
    IF v_cmd.stage = 'ENDED_FAILURE' THEN
        RETURN QUERY SELECT v_cmd.*;
        RETURN;
    END IF;
    IF v_cmd.stage NOT IN ('TEMPORARY_CREATED', 'COPYING') THEN
        RAISE EXCEPTION 'phase 3 of the move % committed (stage %): roll forward, it cannot end '
            'with failure', v_command_id, v_cmd.stage USING ERRCODE = 'MD003';
    END IF;
    PERFORM public.MarkTemporaryDiskIllegal(v_cmd.temporary_disk_id, TRUE);
    PERFORM public.InsertMoveDiskAuditLog(
        2011, 'USER_MOVED_DISK_FINISHED_FAILURE', 2,
        format('Moving disk %s from storage domain %s to %s failed: %s', v_cmd.image_group_id,
            v_cmd.src_storage, v_cmd.dest_storage, coalesce(v_error, 'unknown error')),
        v_cmd.storage_pool_id, v_cmd.dest_storage, v_command_id
    );
    RETURN QUERY
    SELECT * FROM public.EndMoveDiskCommand(v_command_id, 'ENDED_FAILURE', 'ENDED_WITH_FAILURE', v_error);
END;
$procedure$;
