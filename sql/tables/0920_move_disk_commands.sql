-- move_disk_commands: the working state of the disk moves, removals and cleanups that the
-- harness runs as commands (one row per command_entities row of those commands): the stage a
-- command reached and the lease of the worker process that runs it. Fresh installs; existing
-- databases run sql/upgrade/0004_move_disk_commands.sql, which creates the same tables.
CREATE TABLE IF NOT EXISTS move_disk_commands (
    command_id UUID NOT NULL,
    image_group_id UUID NOT NULL,
    src_storage UUID NOT NULL,
    dest_storage UUID NOT NULL,
    storage_pool_id UUID NOT NULL,
    temporary_disk_id UUID NOT NULL,
    wipe_after_delete BOOLEAN NOT NULL DEFAULT FALSE,
    stage TEXT NOT NULL,
    copy_task_id UUID,
    delete_task_id UUID,
    lease_owner TEXT,
    lease_expires TIMESTAMPTZ,
    last_error TEXT,
    recovered BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at TIMESTAMPTZ,
    CONSTRAINT pk_move_disk_commands PRIMARY KEY (command_id),
    CONSTRAINT fk_move_disk_commands_command FOREIGN KEY (command_id)
    REFERENCES command_entities (command_id) ON DELETE CASCADE,
    CONSTRAINT ck_move_disk_commands_stage CHECK (stage IN (
        'TEMPORARY_CREATED', 'COPYING', 'SWITCHED', 'DELETING_SOURCE',
        'ENDED_SUCCESS', 'ENDED_WITH_LEFTOVER', 'ENDED_FAILURE'
    )),
    -- Indexes declared as UNIQUE (<columns>, command_id), true since command_id is the key, so
    -- that the table is born with them (no CREATE INDEX in an upgrade): the unfinished moves
    -- (ended_at IS NULL) by lease expiry, and the moves of a disk.
    CONSTRAINT ux_move_disk_commands_unfinished UNIQUE (ended_at, lease_expires, command_id),
    CONSTRAINT ux_move_disk_commands_image_group_id UNIQUE (image_group_id, command_id)
);


COMMENT ON TABLE move_disk_commands IS
'Disk moves run as commands: the stage each reached and the lease of the process running it, '
'so that any process can finish a move another one started.';
COMMENT ON COLUMN move_disk_commands.command_id IS 'command_entities.command_id of the move.';
COMMENT ON COLUMN move_disk_commands.stage IS
'TEMPORARY_CREATED (phase 1 committed), COPYING (copy task recorded), SWITCHED (phase 3 '
'committed), DELETING_SOURCE (source deletion task recorded), then one of ENDED_SUCCESS, '
'ENDED_WITH_LEFTOVER, ENDED_FAILURE.';
COMMENT ON COLUMN move_disk_commands.temporary_disk_id IS
'The temporary (To_Be_Deleted) disk phase 1 created.';
COMMENT ON COLUMN move_disk_commands.lease_owner IS
'The process running the move (host:pid:start); NULL once the move ended.';
COMMENT ON COLUMN move_disk_commands.lease_expires IS
'Until when the owner holds the move; after that any process may take it over.';
COMMENT ON COLUMN move_disk_commands.recovered IS
'Whether a process other than the one that started the move finished it.';

-- image_group_deletion_leases: which process is deleting a pending storage deletion
-- (image_groups_to_be_deleted) right now, until when: cleanups and removals in several processes
-- claim deletions with FOR UPDATE SKIP LOCKED and a lease, so that no two delete the same image
-- group at once and a dead process's deletion is taken over.
CREATE TABLE IF NOT EXISTS image_group_deletion_leases (
    image_group_id UUID NOT NULL,
    storage_domain_id UUID NOT NULL,
    lease_owner TEXT NOT NULL,
    lease_expires TIMESTAMPTZ NOT NULL,
    CONSTRAINT pk_image_group_deletion_leases PRIMARY KEY (image_group_id, storage_domain_id)
);

COMMENT ON TABLE image_group_deletion_leases IS
'The process deleting a pending storage deletion (image_groups_to_be_deleted) now, and until when.';
COMMENT ON COLUMN image_group_deletion_leases.image_group_id IS 'The image group being deleted.';
COMMENT ON COLUMN image_group_deletion_leases.storage_domain_id IS 'The domain it is deleted on.';
COMMENT ON COLUMN image_group_deletion_leases.lease_owner IS 'The process (host:pid:start).';
COMMENT ON COLUMN image_group_deletion_leases.lease_expires IS
'After this, another process may take the deletion over.';
