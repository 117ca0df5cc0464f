-- Disk move commands: their events, lookups, and leases (the process that runs a move holds
-- its lease; a move whose lease expired, or whose owner died, may be claimed by another process;
-- every change after phase 1 requires the lease: see move_commands_sp.sql).

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
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_id BIGINT;
BEGIN
    INSERT INTO public.audit_log (
        log_time, log_type, log_type_name, severity, message,
        storage_pool_id, storage_pool_name, storage_domain_id, storage_domain_name, correlation_id
    )
    VALUES (
        now(), v_log_type, v_log_type_name, v_severity, v_message,
        v_storage_pool_id,
        coalesce((SELECT p.name FROM public.storage_pool AS p WHERE p.id = v_storage_pool_id), ''),
        v_storage_domain_id,
        coalesce((
            SELECT s.storage_name FROM public.storage_domain_static AS s WHERE s.id = v_storage_domain_id
        ), ''),
        v_correlation_id::TEXT
    )
    RETURNING audit_log_id INTO v_id;
    RETURN v_id;
END;
$procedure$;

-- GetMoveDiskCommand: the move with that command id (its stage, lease and domains).
CREATE OR REPLACE FUNCTION GetMoveDiskCommand(v_command_id UUID)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY SELECT * FROM public.move_disk_commands AS c WHERE c.command_id = v_command_id;
END;
$procedure$;

-- GetUnfinishedMoveDiskCommands: every move that has not ended, oldest first, with its lease.
CREATE OR REPLACE FUNCTION GetUnfinishedMoveDiskCommands()
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.move_disk_commands AS c WHERE c.ended_at IS NULL ORDER BY c.created_at;
END;
$procedure$;

-- GetMoveDiskCommandsByImageGroupId: every move of that disk, newest first.
CREATE OR REPLACE FUNCTION GetMoveDiskCommandsByImageGroupId(v_image_group_id UUID)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.move_disk_commands AS c
    WHERE c.image_group_id = v_image_group_id
    ORDER BY c.created_at DESC;
END;
$procedure$;

-- ClaimMoveDiskCommand: gives the lease of unfinished move v_command_id to v_lease_owner for
-- v_lease_seconds when it is free: already theirs, expired, or held by v_dead_owner (a process the
-- caller saw dead). No row when another live process holds it or is claiming it, or it ended.
-- A takeover from another owner is recorded (recovered, SYSTEM_MOVED_DISK_RECOVERED).
CREATE OR REPLACE FUNCTION ClaimMoveDiskCommand(
    v_command_id UUID,
    v_lease_owner VARCHAR(255),
    v_lease_seconds INTEGER,
    v_dead_owner VARCHAR(255) DEFAULT NULL
)
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_cmd public.move_disk_commands;
BEGIN
    SELECT * INTO v_cmd
    FROM public.move_disk_commands AS c
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
    UPDATE public.move_disk_commands AS c
    SET
        lease_owner = v_lease_owner,
        lease_expires = now() + make_interval(secs => v_lease_seconds),
        recovered = c.recovered OR c.lease_owner IS DISTINCT FROM v_lease_owner,
        updated_at = now()
    WHERE c.command_id = v_command_id;
    IF v_cmd.lease_owner IS DISTINCT FROM v_lease_owner THEN
        PERFORM public.InsertMoveDiskAuditLog(
            20002, 'SYSTEM_MOVED_DISK_RECOVERED', 1,
            format('The move of disk %s (stage %s) was taken over by %s from %s.',
                v_cmd.image_group_id, v_cmd.stage, v_lease_owner,
                coalesce(v_cmd.lease_owner, 'nobody')),
            v_cmd.storage_pool_id, v_cmd.dest_storage, v_command_id
        );
    END IF;
    RETURN QUERY SELECT * FROM public.move_disk_commands AS c WHERE c.command_id = v_command_id;
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
RETURNS MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_cmd public.move_disk_commands := public.GetMoveDiskCommandForUpdate(v_command_id, v_lease_owner);
BEGIN
    IF v_cmd.ended_at IS NULL THEN
        UPDATE public.move_disk_commands AS c
        SET lease_expires = now() + make_interval(secs => v_lease_seconds), updated_at = now()
        WHERE c.command_id = v_command_id
        RETURNING * INTO v_cmd;
    END IF;
    RETURN v_cmd;
END;
$procedure$;

-- GetMoveDiskCommandForUpdate: the move v_command_id, locked, when v_lease_owner holds its lease
-- (or it ended), without writing it: a phase function extends the lease in its own stage update.
-- MD003 when another process holds it (lease lost), MD001 when there is no such move.
CREATE OR REPLACE FUNCTION GetMoveDiskCommandForUpdate(
    v_command_id UUID,
    v_lease_owner VARCHAR(255)
)
RETURNS MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    v_cmd public.move_disk_commands;
BEGIN
    SELECT * INTO v_cmd FROM public.move_disk_commands AS c WHERE c.command_id = v_command_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no move has command id %', v_command_id USING ERRCODE = 'MD001';
    END IF;
    IF v_cmd.ended_at IS NULL AND v_cmd.lease_owner IS DISTINCT FROM v_lease_owner THEN
        RAISE EXCEPTION 'the move % is run by another process (%); this one lost its lease',
            v_command_id, coalesce(v_cmd.lease_owner, 'nobody') USING ERRCODE = 'MD003';
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
RETURNS SETOF MOVE_DISK_COMMANDS
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY SELECT * FROM public.LockMoveDiskCommand(v_command_id, v_lease_owner, v_lease_seconds);
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
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.move_disk_commands AS c
    SET lease_expires = now(), last_error = coalesce(v_error, c.last_error), updated_at = now()
    WHERE c.command_id = v_command_id AND c.lease_owner = v_lease_owner AND c.ended_at IS NULL;
    RETURN FOUND;
END;
$procedure$;

-- GetImageGroupPlacement: every volume of disk (image group) v_image_group_id with its parent,
-- status, and each storage domain the database maps it on (one row per volume and domain).
CREATE OR REPLACE FUNCTION GetImageGroupPlacement(v_image_group_id UUID)
RETURNS TABLE (image_guid UUID, parentid UUID, imagestatus INTEGER, storage_domain_id UUID)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT i.image_guid, i.parentid, i.imagestatus, m.storage_domain_id
    FROM public.images AS i
    LEFT JOIN public.image_storage_domain_map AS m ON m.image_id = i.image_guid
    WHERE i.image_group_id = v_image_group_id
    ORDER BY i.image_guid;
END;
$procedure$;
