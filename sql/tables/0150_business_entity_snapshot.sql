-- business_entity_snapshot: compensation data, how to undo what a command changed.
CREATE TABLE business_entity_snapshot (
    id UUID NOT NULL,
    command_id UUID NOT NULL,
    command_type VARCHAR(256) NOT NULL,
    entity_id VARCHAR(128),
    entity_type VARCHAR(128),
    entity_snapshot TEXT,
    snapshot_class VARCHAR(128),
    snapshot_type INTEGER,
    insertion_order INTEGER,
    started_at TIMESTAMP WITH TIME ZONE DEFAULT now(),
    CONSTRAINT pk_id PRIMARY KEY (id),
    CONSTRAINT uq_command_id_entity_id UNIQUE (command_id, entity_id, entity_type, snapshot_type)
);

CREATE INDEX idx_business_entity_snapshot_command_id ON business_entity_snapshot (command_id);

COMMENT ON TABLE business_entity_snapshot IS
'Compensation records: the state of entities before a command changed them, replayed if the command fails.';
COMMENT ON COLUMN business_entity_snapshot.id IS 'The record id.';
COMMENT ON COLUMN business_entity_snapshot.command_id IS 'The command whose change this record undoes.';
COMMENT ON COLUMN business_entity_snapshot.entity_id IS 'The id of the entity changed.';
COMMENT ON COLUMN business_entity_snapshot.snapshot_type IS
'oVirt SnapshotType: CHANGED_ENTITY=0, NEW_ENTITY_ID=1, CHANGED_STATUS_ONLY=2, TRANSIENT_ENTITY=3.';
COMMENT ON COLUMN business_entity_snapshot.insertion_order IS 'Order of the changes; undone in reverse.';
