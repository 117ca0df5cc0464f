-- Persisted commands (oVirt command_entities_sp.sql names and parameters).

-- InsertCommandEntity: persists a command.
CREATE OR REPLACE FUNCTION InsertCommandEntity(
    v_user_id UUID,
    v_engine_session_seq_id BIGINT,
    v_command_id UUID,
    v_command_type INTEGER,
    v_parent_command_id UUID,
    v_root_command_id UUID,
    v_command_context TEXT,
    v_command_parameters TEXT,
    v_command_params_class VARCHAR(256),
    v_created_at TIMESTAMP WITH TIME ZONE,
    v_status VARCHAR(20),
    v_executed BOOLEAN,
    v_callback_enabled BOOLEAN,
    v_return_value TEXT,
    v_return_value_class VARCHAR(256),
    v_data TEXT
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.command_entities (
        user_id,
        engine_session_seq_id,
        command_id,
        command_type,
        parent_command_id,
        root_command_id,
        command_context,
        command_parameters,
        command_params_class,
        created_at,
        status,
        executed,
        callback_enabled,
        return_value,
        return_value_class,
        data
    )
    VALUES (
        v_user_id,
        v_engine_session_seq_id,
        v_command_id,
        v_command_type,
        v_parent_command_id,
        v_root_command_id,
        v_command_context,
        v_command_parameters,
        v_command_params_class,
        v_created_at,
        v_status,
        v_executed,
        v_callback_enabled,
        v_return_value,
        v_return_value_class,
        v_data
    );
END;
$procedure$;

-- UpdateCommandEntity: rewrites a persisted command (its creation time stays).
CREATE OR REPLACE FUNCTION UpdateCommandEntity(
    v_user_id UUID,
    v_engine_session_seq_id BIGINT,
    v_command_id UUID,
    v_command_type INTEGER,
    v_parent_command_id UUID,
    v_root_command_id UUID,
    v_command_context TEXT,
    v_command_parameters TEXT,
    v_command_params_class VARCHAR(256),
    v_status VARCHAR(20),
    v_executed BOOLEAN,
    v_callback_enabled BOOLEAN,
    v_return_value TEXT,
    v_return_value_class VARCHAR(256),
    v_data TEXT
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.command_entities
    SET
        user_id = v_user_id,
        engine_session_seq_id = v_engine_session_seq_id,
        command_type = v_command_type,
        parent_command_id = v_parent_command_id,
        root_command_id = v_root_command_id,
        command_context = v_command_context,
        command_parameters = v_command_parameters,
        command_params_class = v_command_params_class,
        status = v_status,
        executed = v_executed,
        callback_enabled = v_callback_enabled,
        return_value = v_return_value,
        return_value_class = v_return_value_class,
        data = v_data
    WHERE command_id = v_command_id;
END;
$procedure$;

-- InsertOrUpdateCommandEntity: persists a command, or rewrites it when it is already there.
CREATE OR REPLACE FUNCTION InsertOrUpdateCommandEntity(
    v_user_id UUID,
    v_engine_session_seq_id BIGINT,
    v_command_id UUID,
    v_command_type INTEGER,
    v_parent_command_id UUID,
    v_root_command_id UUID,
    v_command_context TEXT,
    v_command_parameters TEXT,
    v_command_params_class VARCHAR(256),
    v_created_at TIMESTAMP WITH TIME ZONE,
    v_status VARCHAR(20),
    v_executed BOOLEAN,
    v_callback_enabled BOOLEAN,
    v_return_value TEXT,
    v_return_value_class VARCHAR(256),
    v_data TEXT
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM public.command_entities WHERE command_id = v_command_id) THEN
        PERFORM public.InsertCommandEntity(
            v_user_id, v_engine_session_seq_id, v_command_id, v_command_type, v_parent_command_id,
            v_root_command_id, v_command_context, v_command_parameters, v_command_params_class,
            v_created_at, v_status, v_executed, v_callback_enabled, v_return_value,
            v_return_value_class, v_data
        );
    ELSE
        PERFORM public.UpdateCommandEntity(
            v_user_id, v_engine_session_seq_id, v_command_id, v_command_type, v_parent_command_id,
            v_root_command_id, v_command_context, v_command_parameters, v_command_params_class,
            v_status, v_executed, v_callback_enabled, v_return_value, v_return_value_class, v_data
        );
    END IF;
END;
$procedure$;

-- UpdateCommandEntityStatus: sets the CommandStatus of a command (ACTIVE, SUCCEEDED, ...).
CREATE OR REPLACE FUNCTION UpdateCommandEntityStatus(
    v_command_id UUID,
    v_status VARCHAR(20)
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.command_entities
    SET status = v_status
    WHERE command_id = v_command_id;
END;
$procedure$;

-- UpdateCommandEntityExecuted: records whether a command's execute part ran.
CREATE OR REPLACE FUNCTION UpdateCommandEntityExecuted(
    v_command_id UUID,
    v_executed BOOLEAN
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.command_entities
    SET executed = v_executed
    WHERE command_id = v_command_id;
END;
$procedure$;

-- UpdateCommandEntityNotified: records whether a command's callback was notified.
CREATE OR REPLACE FUNCTION UpdateCommandEntityNotified(
    v_command_id UUID,
    v_callback_notified BOOLEAN
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.command_entities
    SET callback_notified = v_callback_notified
    WHERE command_id = v_command_id;
END;
$procedure$;

-- GetCommandEntityByCommandEntityId: the persisted command with that id.
CREATE OR REPLACE FUNCTION GetCommandEntityByCommandEntityId(
    v_command_id UUID
)
RETURNS SETOF COMMAND_ENTITIES
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.command_entities
    WHERE command_id = v_command_id;
END;
$procedure$;

-- GetAllFromCommandEntities: every persisted command.
CREATE OR REPLACE FUNCTION GetAllFromCommandEntities()
RETURNS SETOF COMMAND_ENTITIES
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.command_entities;
END;
$procedure$;

-- GetCommandEntitiesByParentCmdId: the commands under a root command.
CREATE OR REPLACE FUNCTION GetCommandEntitiesByParentCmdId(
    v_root_command_id UUID
)
RETURNS SETOF COMMAND_ENTITIES
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.command_entities
    WHERE root_command_id = v_root_command_id;
END;
$procedure$;

-- DeleteCommandEntity: forgets a persisted command.
CREATE OR REPLACE FUNCTION DeleteCommandEntity(
    v_command_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.command_entities
    WHERE command_id = v_command_id;
END;
$procedure$;

-- DeleteCommandEntitiesOlderThanDate: forgets the commands created before a date.
CREATE OR REPLACE FUNCTION DeleteCommandEntitiesOlderThanDate(
    v_date TIMESTAMP WITH TIME ZONE
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    DELETE FROM public.command_entities
    WHERE created_at < v_date;
END;
$procedure$;
