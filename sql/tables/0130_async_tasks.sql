-- async_tasks: storage tasks (VDSM tasks) the engine started and still tracks.
CREATE TABLE async_tasks (
    task_id UUID NOT NULL,
    action_type INTEGER NOT NULL,
    status INTEGER NOT NULL,
    result INTEGER NOT NULL,
    step_id UUID,
    command_id UUID NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE,
    storage_pool_id UUID,
    task_type INTEGER NOT NULL DEFAULT 0,
    vdsm_task_id UUID,
    root_command_id UUID,
    user_id UUID,
    CONSTRAINT pk_async_tasks PRIMARY KEY (task_id)
);

CREATE INDEX idx_vdsm_task_id ON async_tasks (vdsm_task_id);
-- Not in oVirt: a recovering engine finds the tasks of a command by it.
CREATE INDEX idx_async_tasks_command_id ON async_tasks (command_id);

COMMENT ON TABLE async_tasks IS
'Asynchronous storage tasks started by commands, kept until the engine has ended them.';
COMMENT ON COLUMN async_tasks.task_id IS 'The engine''s id of the task.';
COMMENT ON COLUMN async_tasks.vdsm_task_id IS 'The task id on the storage agent (VDSM).';
COMMENT ON COLUMN async_tasks.command_id IS
'The command that started the task (command_entities.command_id).';
COMMENT ON COLUMN async_tasks.status IS
'oVirt AsyncTaskStatusEnum: unknown=0, init=1, running=2, finished=3, aborting=4, cleaning=5.';
COMMENT ON COLUMN async_tasks.result IS
'oVirt AsyncTaskResultEnum: success=0, failure=1, cleanSuccess=2, cleanFailure=3.';
COMMENT ON COLUMN async_tasks.task_type IS
'oVirt AsyncTaskType, by ordinal: unknown=0, copyImage=1, moveImage=2, createVolume=3, deleteVolume=4, '
'deleteImage=5, ...';
