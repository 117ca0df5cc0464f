-- Storage tasks (oVirt async_tasks_sp.sql names and parameters).

-- Insertasync_tasks: records a storage task started by a command.
CREATE OR REPLACE FUNCTION Insertasync_tasks(
    v_action_type INTEGER,
    v_result INTEGER,
    v_status INTEGER,
    v_user_id UUID,
    v_vdsm_task_id UUID,
    v_task_id UUID,
    v_step_id UUID,
    v_command_id UUID,
    v_root_command_id UUID,
    v_started_at TIMESTAMP WITH TIME ZONE,
    v_storage_pool_id UUID,
    v_async_task_type INTEGER
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    INSERT INTO public.async_tasks (
        action_type,
        result,
        status,
        user_id,
        vdsm_task_id,
        task_id,
        step_id,
        command_id,
        root_command_id,
        started_at,
        storage_pool_id,
        task_type
    )
    VALUES (
        v_action_type,
        v_result,
        v_status,
        v_user_id,
        v_vdsm_task_id,
        v_task_id,
        v_step_id,
        v_command_id,
        v_root_command_id,
        v_started_at,
        v_storage_pool_id,
        v_async_task_type
    );
END;
$procedure$;

-- Updateasync_tasks: records the progress of a storage task.
CREATE OR REPLACE FUNCTION Updateasync_tasks(
    v_action_type INTEGER,
    v_result INTEGER,
    v_status INTEGER,
    v_user_id UUID,
    v_vdsm_task_id UUID,
    v_task_id UUID,
    v_step_id UUID,
    v_command_id UUID,
    v_root_command_id UUID,
    v_storage_pool_id UUID
)
RETURNS VOID
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    UPDATE public.async_tasks
    SET
        action_type = v_action_type,
        result = v_result,
        status = v_status,
        user_id = v_user_id,
        vdsm_task_id = v_vdsm_task_id,
        step_id = v_step_id,
        command_id = v_command_id,
        root_command_id = v_root_command_id,
        storage_pool_id = v_storage_pool_id
    WHERE task_id = v_task_id;
END;
$procedure$;

-- Deleteasync_tasks: forgets a storage task; answers how many rows went (0 or 1).
CREATE OR REPLACE FUNCTION Deleteasync_tasks(
    v_task_id UUID
)
RETURNS INTEGER
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    deleted_rows INTEGER;
BEGIN
    DELETE FROM public.async_tasks
    WHERE task_id = v_task_id;
    GET DIAGNOSTICS deleted_rows = ROW_COUNT;
    RETURN deleted_rows;
END;
$procedure$;

-- DeleteAsyncTasksByVdsmTaskId: forgets the task with that agent task id; answers how many rows went.
CREATE OR REPLACE FUNCTION DeleteAsyncTasksByVdsmTaskId(
    v_vdsm_task_id UUID
)
RETURNS INTEGER
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
DECLARE
    deleted_rows INTEGER;
BEGIN
    DELETE FROM public.async_tasks
    WHERE vdsm_task_id = v_vdsm_task_id;
    GET DIAGNOSTICS deleted_rows = ROW_COUNT;
    RETURN deleted_rows;
END;
$procedure$;

-- GetAllFromasync_tasks: every storage task tracked.
CREATE OR REPLACE FUNCTION GetAllFromasync_tasks()
RETURNS SETOF ASYNC_TASKS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.async_tasks;
END;
$procedure$;

-- Getasync_tasksBytask_id: the storage task with that id.
CREATE OR REPLACE FUNCTION Getasync_tasksBytask_id(
    v_task_id UUID
)
RETURNS SETOF ASYNC_TASKS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.async_tasks
    WHERE task_id = v_task_id;
END;
$procedure$;

-- GetAsyncTasksByVdsmTaskId: the storage task with that agent (VDSM) task id.
CREATE OR REPLACE FUNCTION GetAsyncTasksByVdsmTaskId(
    v_vdsm_task_id UUID
)
RETURNS SETOF ASYNC_TASKS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.async_tasks
    WHERE vdsm_task_id = v_vdsm_task_id;
END;
$procedure$;

-- GetAsyncTasksByStoragePoolId: the storage tasks of a data center.
CREATE OR REPLACE FUNCTION GetAsyncTasksByStoragePoolId(
    v_storage_pool_id UUID
)
RETURNS SETOF ASYNC_TASKS
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $procedure$
BEGIN
    RETURN QUERY
    SELECT * FROM public.async_tasks
    WHERE storage_pool_id = v_storage_pool_id;
END;
$procedure$;
