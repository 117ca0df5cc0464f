-- command_entities: persisted commands (with their parameters) that may outlive the engine process.
CREATE TABLE command_entities (
    command_id UUID NOT NULL,
    command_type INTEGER NOT NULL,
    root_command_id UUID,
    command_parameters TEXT,
    command_params_class VARCHAR(256),
    created_at TIMESTAMP WITH TIME ZONE,
    status VARCHAR(20) DEFAULT NULL,
    callback_enabled BOOLEAN DEFAULT FALSE,
    callback_notified BOOLEAN DEFAULT FALSE,
    return_value TEXT,
    return_value_class VARCHAR(256),
    executed BOOLEAN DEFAULT FALSE,
    user_id UUID,
    parent_command_id UUID,
    data TEXT,
    engine_session_seq_id BIGINT,
    command_context TEXT,
    CONSTRAINT pk_command_entities PRIMARY KEY (command_id)
);

CREATE INDEX idx_root_command_id ON command_entities (root_command_id)
WHERE root_command_id IS NOT NULL;

COMMENT ON TABLE command_entities IS
'Commands the engine persisted so that they can be ended (or compensated) after a restart.';
COMMENT ON COLUMN command_entities.command_id IS 'The command id.';
COMMENT ON COLUMN command_entities.command_type IS 'oVirt ActionType value.';
COMMENT ON COLUMN command_entities.status IS
'oVirt CommandStatus: UNKNOWN, NOT_STARTED, ACTIVE, FAILED, EXECUTION_FAILED, SUCCEEDED, '
'ENDED_SUCCESSFULLY, ENDED_WITH_FAILURE.';
COMMENT ON COLUMN command_entities.root_command_id IS 'The top command of a command tree.';
COMMENT ON COLUMN command_entities.parent_command_id IS 'The command that started this one.';
