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
-- 2052; outside oVirt's range: MOVEDISK_LEFTOVER_REMOVED 19001, MOVEDISK_MOVE_RECOVERED 19002.

-- InsertMoveDiskAuditLog: records one event of a disk move (correlated by its command id) and
-- answers its id.
CREATE OR REPLACE FUNCTION InsertMoveDiskAuditLog(
    v_log_type INTEGER,
    v_log_type_name VARCHAR(100),
    v_severity INTEGER,
    v_message TEXT,
    v_storage_pool_id UUID,
    v_storage_domain_id UUID,
    v_correlation_id UUID
)
RETURNS BIGINT
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_id BIGINT;
BEGIN
    INSERT INTO audit_log (
        log_time, log_type, log_type_name, severity, message,
        storage_pool_id, storage_pool_name, storage_domain_id, storage_domain_name, correlation_id
    )
    VALUES (
        now(), v_log_type, v_log_type_name, v_severity, v_message,
        v_storage_pool_id,
        coalesce((SELECT p.name FROM storage_pool AS p WHERE p.id = v_storage_pool_id), ''),
        v_storage_domain_id,
        coalesce((
            SELECT s.storage_name FROM storage_domain_static AS s WHERE s.id = v_storage_domain_id
        ), ''),
        v_correlation_id::TEXT
    )
    RETURNING audit_log_id INTO v_id;
    RETURN v_id;
END;
$procedure$;

-- StartMoveDiskCommand: validation and phase 1 of moving disk v_image_group_id from the domain
-- holding it to v_dest_storage, in one transaction: the temporary disk (CreateTemporaryDiskForMove),
-- the command (command_entities, ACTIVE), its stage TEMPORARY_CREATED with the caller's lease,
-- and the USER_MOVED_DISK event. Refuses (changing nothing) what CreateTemporaryDiskForMove refuses,
-- a disk on several domains, and a destination still holding a partial copy of the disk to delete.
CREATE OR REPLACE FUNCTION StartMoveDiskCommand(
    v_command_id UUID,
    v_image_group_id UUID,
    v_dest_storage UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER,
    v_user_id UUID DEFAULT NULL
)
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
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
    FROM images AS i
    INNER JOIN image_storage_domain_map AS m ON m.image_id = i.image_guid
    WHERE i.image_group_id = v_image_group_id;
    IF v_domains = 0 THEN
        RAISE EXCEPTION 'no disk has id %', v_image_group_id USING ERRCODE = 'MD001';
    END IF;
    IF v_domains > 1 THEN
        RAISE EXCEPTION 'disk % is on % storage domains; a move needs it on one', v_image_group_id,
            v_domains USING ERRCODE = 'MD003';
    END IF;
    IF EXISTS (
        SELECT 1 FROM storage_deletions AS d
        WHERE d.storage_domain_id = v_dest_storage AND d.image_group_id = v_image_group_id
    ) THEN
        RAISE EXCEPTION 'storage domain % still holds a copy of disk % that is to be deleted; '
            'run movedisk cleanup first', v_dest_storage, v_image_group_id USING ERRCODE = 'MD003';
    END IF;

    SELECT c.temporary_disk_id INTO v_tmp
    FROM CreateTemporaryDiskForMove(v_image_group_id, v_src, v_dest_storage, NULL, v_command_id) AS c
    LIMIT 1;

    SELECT p.storage_pool_id INTO v_pool FROM storage_pool_iso_map AS p WHERE p.storage_id = v_src;
    SELECT coalesce(b.wipe_after_delete, FALSE), b.disk_alias INTO v_wipe, v_alias
    FROM base_disks AS b WHERE b.disk_id = v_image_group_id;

    INSERT INTO command_entities (
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
    INSERT INTO move_disk_commands (
        command_id, image_group_id, src_storage, dest_storage, storage_pool_id, temporary_disk_id,
        wipe_after_delete, stage, lease_owner, lease_expires
    )
    VALUES (
        v_command_id, v_image_group_id, v_src, v_dest_storage, v_pool, v_tmp, v_wipe,
        'TEMPORARY_CREATED', v_lease_owner, now() + make_interval(secs => v_lease_seconds)
    );
    PERFORM InsertMoveDiskAuditLog(
        2008, 'USER_MOVED_DISK', 0,
        format('Moving disk %s to storage domain %s.', coalesce(v_alias, v_image_group_id::TEXT),
            (SELECT s.storage_name FROM storage_domain_static AS s WHERE s.id = v_dest_storage)),
        v_pool, v_dest_storage, v_command_id
    );
    RETURN QUERY SELECT * FROM move_disk_commands AS c WHERE c.command_id = v_command_id;
END;
$procedure$;

-- GetMoveDiskCommand: the move with that command id (its stage, lease and domains).
CREATE OR REPLACE FUNCTION GetMoveDiskCommand(v_command_id UUID)
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY SELECT * FROM move_disk_commands AS c WHERE c.command_id = v_command_id;
END;
$procedure$;

-- GetUnfinishedMoveDiskCommands: every move that has not ended, oldest first, with its lease.
CREATE OR REPLACE FUNCTION GetUnfinishedMoveDiskCommands()
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM move_disk_commands AS c WHERE c.ended_at IS NULL ORDER BY c.created_at;
END;
$procedure$;

-- GetMoveDiskCommandsByImageGroupId: every move of that disk, newest first.
CREATE OR REPLACE FUNCTION GetMoveDiskCommandsByImageGroupId(v_image_group_id UUID)
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM move_disk_commands AS c
    WHERE c.image_group_id = v_image_group_id
    ORDER BY c.created_at DESC;
END;
$procedure$;

-- ClaimMoveDiskCommand: gives the lease of unfinished move v_command_id to v_lease_owner for
-- v_lease_seconds when it is free: already theirs, expired, or held by v_dead_owner (a process the
-- caller saw dead). No row when another live process holds it or is claiming it, or it ended.
-- A takeover from another owner is recorded (recovered, MOVEDISK_MOVE_RECOVERED).
CREATE OR REPLACE FUNCTION ClaimMoveDiskCommand(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER,
    v_dead_owner VARCHAR(255) DEFAULT NULL
)
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_cmd move_disk_commands;
BEGIN
    SELECT * INTO v_cmd
    FROM move_disk_commands AS c
    WHERE
        c.command_id = v_command_id
        AND c.ended_at IS NULL
        AND (
            c.lease_owner IS NULL
            OR c.lease_owner = v_lease_owner
            OR c.lease_expires < now()
            OR c.lease_owner = v_dead_owner
        )
    FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE move_disk_commands AS c
    SET
        lease_owner = v_lease_owner,
        lease_expires = now() + make_interval(secs => v_lease_seconds),
        recovered = c.recovered OR c.lease_owner IS DISTINCT FROM v_lease_owner,
        updated_at = now()
    WHERE c.command_id = v_command_id;
    IF v_cmd.lease_owner IS DISTINCT FROM v_lease_owner THEN
        PERFORM InsertMoveDiskAuditLog(
            19002, 'MOVEDISK_MOVE_RECOVERED', 0,
            format('The move of disk %s (stage %s) was taken over by %s from %s.',
                v_cmd.image_group_id, v_cmd.stage, v_lease_owner,
                coalesce(v_cmd.lease_owner, 'nobody')),
            v_cmd.storage_pool_id, v_cmd.dest_storage, v_command_id
        );
    END IF;
    RETURN QUERY SELECT * FROM move_disk_commands AS c WHERE c.command_id = v_command_id;
END;
$procedure$;

-- LockMoveDiskCommand: the move v_command_id, locked, when v_lease_owner holds its lease (which
-- is extended by v_lease_seconds); MD003 when another process holds it (lease lost), MD001 when
-- there is no such move.
CREATE OR REPLACE FUNCTION LockMoveDiskCommand(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER
)
RETURNS move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_cmd move_disk_commands;
BEGIN
    SELECT * INTO v_cmd FROM move_disk_commands AS c WHERE c.command_id = v_command_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no move has command id %', v_command_id USING ERRCODE = 'MD001';
    END IF;
    IF v_cmd.ended_at IS NULL AND v_cmd.lease_owner IS DISTINCT FROM v_lease_owner THEN
        RAISE EXCEPTION 'the move % is run by another process (%); this one lost its lease',
            v_command_id, coalesce(v_cmd.lease_owner, 'nobody') USING ERRCODE = 'MD003';
    END IF;
    IF v_cmd.ended_at IS NULL THEN
        UPDATE move_disk_commands AS c
        SET lease_expires = now() + make_interval(secs => v_lease_seconds), updated_at = now()
        WHERE c.command_id = v_command_id
        RETURNING * INTO v_cmd;
    END IF;
    RETURN v_cmd;
END;
$procedure$;

-- RenewMoveDiskCommandLease: extends the lease v_lease_owner holds on move v_command_id (while
-- it waits for an agent task); MD003 when the lease was lost.
CREATE OR REPLACE FUNCTION RenewMoveDiskCommandLease(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER
)
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY SELECT * FROM LockMoveDiskCommand(v_command_id, v_lease_owner, v_lease_seconds);
END;
$procedure$;

-- ReleaseMoveDiskCommandLease: gives up the lease of an unfinished move (a process that stops
-- early lets the next one take it over at once).
CREATE OR REPLACE FUNCTION ReleaseMoveDiskCommandLease(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_error TEXT DEFAULT NULL
)
RETURNS BOOLEAN
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    UPDATE move_disk_commands AS c
    SET lease_expires = now(), last_error = coalesce(v_error, c.last_error), updated_at = now()
    WHERE c.command_id = v_command_id AND c.lease_owner = v_lease_owner AND c.ended_at IS NULL;
    RETURN FOUND;
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
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_cmd move_disk_commands := LockMoveDiskCommand(v_command_id, v_lease_owner, v_lease_seconds);
BEGIN
    IF v_cmd.stage = 'COPYING' AND v_cmd.copy_task_id = v_vdsm_task_id THEN
        RETURN QUERY SELECT v_cmd.*;
        RETURN;
    END IF;
    IF v_cmd.stage <> 'TEMPORARY_CREATED' THEN
        RAISE EXCEPTION 'the move % is at stage %; its copy cannot be recorded', v_command_id,
            v_cmd.stage USING ERRCODE = 'MD003';
    END IF;
    PERFORM Insertasync_tasks(
        228, 0, 2, NULL, v_vdsm_task_id, gen_random_uuid(), NULL, v_command_id, v_command_id,
        now(), v_cmd.storage_pool_id, 1
    );
    RETURN QUERY
    UPDATE move_disk_commands AS c
    SET stage = 'COPYING', copy_task_id = v_vdsm_task_id, updated_at = now()
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
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_cmd move_disk_commands := LockMoveDiskCommand(v_command_id, v_lease_owner, v_lease_seconds);
BEGIN
    IF v_cmd.stage IN ('SWITCHED', 'DELETING_SOURCE', 'ENDED_SUCCESS', 'ENDED_WITH_LEFTOVER') THEN
        RETURN QUERY SELECT v_cmd.*;
        RETURN;
    END IF;
    IF v_cmd.stage NOT IN ('TEMPORARY_CREATED', 'COPYING') THEN
        RAISE EXCEPTION 'the move % ended (%); phase 3 cannot run', v_command_id, v_cmd.stage
            USING ERRCODE = 'MD003';
    END IF;
    PERFORM UpdateImageGroupStorageDomain(v_cmd.image_group_id, v_cmd.src_storage, v_cmd.dest_storage);
    DELETE FROM async_tasks AS t WHERE t.command_id = v_command_id;
    RETURN QUERY
    UPDATE move_disk_commands AS c
    SET stage = 'SWITCHED', updated_at = now()
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
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_cmd move_disk_commands := LockMoveDiskCommand(v_command_id, v_lease_owner, v_lease_seconds);
BEGIN
    IF v_cmd.stage = 'DELETING_SOURCE' AND v_cmd.delete_task_id = v_vdsm_task_id THEN
        RETURN QUERY SELECT v_cmd.*;
        RETURN;
    END IF;
    IF v_cmd.stage NOT IN ('SWITCHED', 'DELETING_SOURCE') THEN
        RAISE EXCEPTION 'the move % is at stage %; a source deletion cannot be recorded',
            v_command_id, v_cmd.stage USING ERRCODE = 'MD003';
    END IF;
    DELETE FROM async_tasks AS t WHERE t.command_id = v_command_id;
    PERFORM Insertasync_tasks(
        228, 0, 2, NULL, v_vdsm_task_id, gen_random_uuid(), NULL, v_command_id, v_command_id,
        now(), v_cmd.storage_pool_id, 5
    );
    RETURN QUERY
    UPDATE move_disk_commands AS c
    SET stage = 'DELETING_SOURCE', delete_task_id = v_vdsm_task_id, updated_at = now()
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
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    DELETE FROM async_tasks AS t WHERE t.command_id = v_command_id;
    DELETE FROM business_entity_snapshot AS b WHERE b.command_id = v_command_id;
    UPDATE command_entities AS e
    SET status = v_status, return_value = v_error
    WHERE e.command_id = v_command_id;
    RETURN QUERY
    UPDATE move_disk_commands AS c
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
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_cmd move_disk_commands := LockMoveDiskCommand(v_command_id, v_lease_owner, 0);
BEGIN
    IF v_cmd.stage = 'ENDED_SUCCESS' THEN
        RETURN QUERY SELECT v_cmd.*;
        RETURN;
    END IF;
    IF v_cmd.stage NOT IN ('SWITCHED', 'DELETING_SOURCE') THEN
        RAISE EXCEPTION 'the move % is at stage %; it cannot end with success', v_command_id,
            v_cmd.stage USING ERRCODE = 'MD003';
    END IF;
    PERFORM RemoveTemporaryDisk(v_cmd.temporary_disk_id, TRUE);
    PERFORM InsertMoveDiskAuditLog(
        2010, 'USER_MOVED_DISK_FINISHED_SUCCESS', 0,
        format('Disk %s was moved from storage domain %s to %s.', v_cmd.image_group_id,
            v_cmd.src_storage, v_cmd.dest_storage),
        v_cmd.storage_pool_id, v_cmd.dest_storage, v_command_id
    );
    RETURN QUERY SELECT * FROM EndMoveDiskCommand(v_command_id, 'ENDED_SUCCESS', 'ENDED_SUCCESSFULLY', NULL);
END;
$procedure$;

-- EndMoveDiskCommandWithLeftover: the end of move v_command_id when the agent refused or failed
-- to delete the source image group (v_error says why): the temporary disk stays, ILLEGAL, as the
-- record of the leftover on the source domain, which cleanup retries (storage_deletions
-- SOURCE_LEFTOVER); stage ENDED_WITH_LEFTOVER; events 2025 and 2052. A repeat changes nothing.
CREATE OR REPLACE FUNCTION EndMoveDiskCommandWithLeftover(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_error TEXT,
    v_retry_seconds INTEGER
)
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_cmd move_disk_commands := LockMoveDiskCommand(v_command_id, v_lease_owner, 0);
BEGIN
    IF v_cmd.stage = 'ENDED_WITH_LEFTOVER' THEN
        RETURN QUERY SELECT v_cmd.*;
        RETURN;
    END IF;
    IF v_cmd.stage NOT IN ('SWITCHED', 'DELETING_SOURCE') THEN
        RAISE EXCEPTION 'the move % is at stage %; it cannot end with a leftover', v_command_id,
            v_cmd.stage USING ERRCODE = 'MD003';
    END IF;
    PERFORM MarkTemporaryDiskIllegal(v_cmd.temporary_disk_id);
    INSERT INTO storage_deletions (
        deletion_id, kind, storage_pool_id, storage_domain_id, image_group_id, temporary_disk_id,
        command_id, post_zero, attempts, last_error, next_attempt_at
    )
    VALUES (
        gen_random_uuid(), 'SOURCE_LEFTOVER', v_cmd.storage_pool_id, v_cmd.src_storage,
        v_cmd.image_group_id, v_cmd.temporary_disk_id, v_command_id, v_cmd.wipe_after_delete, 1,
        v_error, now() + make_interval(secs => v_retry_seconds)
    )
    ON CONFLICT (storage_domain_id, image_group_id) DO NOTHING;
    PERFORM InsertMoveDiskAuditLog(
        2025, 'USER_MOVE_IMAGE_GROUP_FAILED_TO_DELETE_SRC_IMAGE', 1,
        format('Could not delete disk %s on its source storage domain %s: %s', v_cmd.image_group_id,
            v_cmd.src_storage, v_error),
        v_cmd.storage_pool_id, v_cmd.src_storage, v_command_id
    );
    PERFORM InsertMoveDiskAuditLog(
        2052, 'USER_MOVED_DISK_FINISHED_WITH_LEFTOVERS', 1,
        format('Disk %s was moved to storage domain %s; its leftover on %s is kept as temporary '
            'disk %s (ILLEGAL) until it can be deleted.', v_cmd.image_group_id, v_cmd.dest_storage,
            v_cmd.src_storage, v_cmd.temporary_disk_id),
        v_cmd.storage_pool_id, v_cmd.src_storage, v_command_id
    );
    RETURN QUERY
    SELECT * FROM EndMoveDiskCommand(v_command_id, 'ENDED_WITH_LEFTOVER', 'ENDED_SUCCESSFULLY', v_error);
END;
$procedure$;

-- EndMoveDiskCommandWithFailure: the end of move v_command_id whose copy failed or never started
-- (before phase 3): the temporary disk ILLEGAL and the original unlocked (MarkTemporaryDiskIllegal),
-- with v_dest_written the partial copy on the destination recorded for deletion (storage_deletions
-- PARTIAL_COPY); stage ENDED_FAILURE; USER_MOVED_DISK_FINISHED_FAILURE. A repeat changes nothing;
-- MD003 once phase 3 committed (roll forward instead).
CREATE OR REPLACE FUNCTION EndMoveDiskCommandWithFailure(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_error TEXT,
    v_dest_written BOOLEAN
)
RETURNS SETOF move_disk_commands
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
DECLARE
    v_cmd move_disk_commands := LockMoveDiskCommand(v_command_id, v_lease_owner, 0);
BEGIN
    IF v_cmd.stage = 'ENDED_FAILURE' THEN
        RETURN QUERY SELECT v_cmd.*;
        RETURN;
    END IF;
    IF v_cmd.stage NOT IN ('TEMPORARY_CREATED', 'COPYING') THEN
        RAISE EXCEPTION 'phase 3 of the move % committed (stage %): roll forward, it cannot end '
            'with failure', v_command_id, v_cmd.stage USING ERRCODE = 'MD003';
    END IF;
    PERFORM MarkTemporaryDiskIllegal(v_cmd.temporary_disk_id, TRUE);
    IF v_dest_written THEN
        INSERT INTO storage_deletions (
            deletion_id, kind, storage_pool_id, storage_domain_id, image_group_id, command_id,
            post_zero
        )
        VALUES (
            gen_random_uuid(), 'PARTIAL_COPY', v_cmd.storage_pool_id, v_cmd.dest_storage,
            v_cmd.image_group_id, v_command_id, FALSE
        )
        ON CONFLICT (storage_domain_id, image_group_id) DO NOTHING;
    END IF;
    PERFORM InsertMoveDiskAuditLog(
        2011, 'USER_MOVED_DISK_FINISHED_FAILURE', 2,
        format('Moving disk %s from storage domain %s to %s failed: %s', v_cmd.image_group_id,
            v_cmd.src_storage, v_cmd.dest_storage, coalesce(v_error, 'unknown error')),
        v_cmd.storage_pool_id, v_cmd.dest_storage, v_command_id
    );
    RETURN QUERY
    SELECT * FROM EndMoveDiskCommand(v_command_id, 'ENDED_FAILURE', 'ENDED_WITH_FAILURE', v_error);
END;
$procedure$;

-- GetAllFromStorageDeletions: every deletion the storage still owes, oldest first.
CREATE OR REPLACE FUNCTION GetAllFromStorageDeletions()
RETURNS SETOF storage_deletions
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY SELECT * FROM storage_deletions AS d ORDER BY d.recorded_at;
END;
$procedure$;

-- ClaimStorageDeletions: up to v_limit pending deletions (only those due, unless v_due_only is
-- FALSE; only those of move v_command_id when given) that no live process holds, leased to
-- v_lease_owner; rows other processes are claiming are skipped.
CREATE OR REPLACE FUNCTION ClaimStorageDeletions(
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER,
    v_limit INTEGER,
    v_due_only BOOLEAN DEFAULT TRUE,
    v_command_id UUID DEFAULT NULL
)
RETURNS SETOF storage_deletions
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
            AND (s.lease_owner IS NULL OR s.lease_expires < now() OR s.lease_owner = v_lease_owner)
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
RETURNS SETOF storage_deletions
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
RETURNS INTEGER
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

-- GetImageGroupPlacement: every volume of disk (image group) v_image_group_id with its parent,
-- status, and each storage domain the database maps it on (one row per volume and domain).
CREATE OR REPLACE FUNCTION GetImageGroupPlacement(v_image_group_id UUID)
RETURNS TABLE (image_guid UUID, parentid UUID, imagestatus INTEGER, storage_domain_id UUID)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT i.image_guid, i.parentid, i.imagestatus, m.storage_domain_id
    FROM images AS i
    LEFT JOIN image_storage_domain_map AS m ON m.image_id = i.image_guid
    WHERE i.image_group_id = v_image_group_id
    ORDER BY i.image_guid;
END;
$procedure$;
