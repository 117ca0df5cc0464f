-- image_groups_to_be_deleted (Move Disk Two Phase Commit): the image groups the storage agent
-- still has to delete on a storage domain and that no disk row records any more: the partial
-- copy on the destination of a failed move, and the source leftover of a move whose deletion
-- there was refused. Fresh installs; existing databases run
-- sql/upgrade/0002_image_groups_to_be_deleted.sql, which creates the same table.

-- The key (image_group_id, storage_domain_id) answers the lookups by disk; the UNIQUE
-- constraint in the other order answers the lookups by domain and the foreign key's check when
-- a storage domain is removed (the table is born with its indexes).
CREATE TABLE IF NOT EXISTS image_groups_to_be_deleted (
    image_group_id UUID NOT NULL,
    storage_domain_id UUID NOT NULL,
    storage_pool_id UUID,
    reason TEXT NOT NULL,
    temporary_disk_id UUID,
    wipe_after_delete BOOLEAN NOT NULL DEFAULT FALSE,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_attempt TIMESTAMPTZ,
    last_error TEXT,
    _create_date TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_image_groups_to_be_deleted PRIMARY KEY (image_group_id, storage_domain_id),
    CONSTRAINT fk_image_groups_to_be_deleted_storage FOREIGN KEY (storage_domain_id)
    REFERENCES storage_domain_static (id),
    CONSTRAINT ck_image_groups_to_be_deleted_reason
    CHECK (reason IN ('MOVE_FAILED', 'SOURCE_AFTER_MOVE')),
    CONSTRAINT ck_image_groups_to_be_deleted_attempts CHECK (attempts >= 0),
    CONSTRAINT ux_image_groups_to_be_deleted_storage UNIQUE (storage_domain_id, image_group_id)
);

COMMENT ON TABLE image_groups_to_be_deleted IS
'Move Disk Two Phase Commit: one row per image group the storage agent must still delete on a '
'storage domain (Image.delete). The row goes only once the agent confirmed the deletion '
'(ConfirmImageGroupDeleted, or RemoveTemporaryDisk for a source leftover).';
COMMENT ON COLUMN image_groups_to_be_deleted.image_group_id IS
'The image group (disk id) to delete: imgUUID of the agent''s Image.delete.';
COMMENT ON COLUMN image_groups_to_be_deleted.storage_domain_id IS
'The storage domain to delete it on: sdUUID of the agent''s Image.delete.';
COMMENT ON COLUMN image_groups_to_be_deleted.storage_pool_id IS
'The storage pool of that domain when the row was recorded: spUUID of Image.delete.';
COMMENT ON COLUMN image_groups_to_be_deleted.reason IS
'MOVE_FAILED: the partial copy on the destination of a move that ended with failure; '
'SOURCE_AFTER_MOVE: the source copy of a moved disk whose deletion on the source was refused.';
COMMENT ON COLUMN image_groups_to_be_deleted.temporary_disk_id IS
'The temporary (To_Be_Deleted) disk of the move that left it (it may since have been removed).';
COMMENT ON COLUMN image_groups_to_be_deleted.wipe_after_delete IS
'postZero of Image.delete: the disk''s wipe_after_delete when the row was recorded.';
COMMENT ON COLUMN image_groups_to_be_deleted.attempts IS
'Deletions the agent failed so far (RecordImageGroupDeletionFailure); for the retry backoff.';
COMMENT ON COLUMN image_groups_to_be_deleted.last_attempt IS
'When the last failed deletion was recorded.';
COMMENT ON COLUMN image_groups_to_be_deleted.last_error IS
'The agent''s error for the last failed deletion.';
COMMENT ON COLUMN image_groups_to_be_deleted._create_date IS
'When the leftover was recorded.';
